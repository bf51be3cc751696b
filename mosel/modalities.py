"""Modality configurations: the non-empty subsets of a model's modalities.

A configuration is written canonically as its modality names joined by "+", in the
model's own modality order (e.g. "audio+image+video"). Every component (solver,
scheduler, store, wire) uses these names, so they must be produced here only.
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable, Sequence


def config_name(modalities: Iterable[str], order: Sequence[str]) -> str:
    chosen = set(modalities)
    unknown = chosen - set(order)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; model has {list(order)}")
    if not chosen:
        raise ValueError("a configuration needs at least one modality")
    return "+".join(m for m in order if m in chosen)


def config_modalities(name: str) -> tuple[str, ...]:
    return tuple(name.split("+"))


def all_configurations(order: Sequence[str]) -> list[str]:
    """All 2^N - 1 configurations, largest first, then in model order."""
    names: list[str] = []
    for size in range(len(order), 0, -1):
        for combo in combinations(order, size):
            names.append("+".join(combo))
    return names
