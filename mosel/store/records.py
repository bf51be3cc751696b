"""What the profile store keeps (docs/architecture.md, "The profile store"): the record kinds
and a record's identity and payload, and the checks of a record's model and kind."""

from __future__ import annotations

from dataclasses import dataclass

# Record kinds, as stored in records.kind.
MODEL = "model"
LATENCY_PROFILE = "latency_profile"
ACCURACY_PROFILE = "accuracy_profile"
STRATEGY_MATRIX = "strategy_matrix"
TUNING = "tuning"
KINDS: tuple[str, ...] = (MODEL, LATENCY_PROFILE, ACCURACY_PROFILE, STRATEGY_MATRIX, TUNING)


@dataclass(frozen=True)
class VersionRef:
    """Identity of one stored record (mirrors mosel.v1.VersionRef)."""

    model: str
    kind: str
    version: int
    variant: str
    seq: int
    created_unix_ms: int


@dataclass(frozen=True)
class Record:
    ref: VersionRef
    payload: str


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")


def check_model(model: str) -> None:
    if not isinstance(model, str) or not model:
        raise ValueError("model name must be a non-empty string")
