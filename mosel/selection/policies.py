"""Scheduling policies: which configuration each queued request runs with.

`agnostic` is the paper's baseline: every request computes every modality it may
use; late jobs are dropped by the dispatcher. Policies see the queue in EDF order
and only touch jobs that have not started.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from mosel.modalities import config_modalities
from mosel.selection.jobs import Job


class Policy(ABC):
    name = "base"

    def admit(self, job: Job, queue: list[Job], now: float) -> None:
        """Raise (e.g. DeadlineExceeded) to refuse a job at once. `queue`: the queued jobs,
        in no particular order. Default: admit."""

    @abstractmethod
    def plan(self, queue: list[Job], now: float) -> None:
        """Set `item.configuration` for every item of every (not started) job in `queue`."""


def full_configuration(candidates: list[str]) -> str:
    """The candidate with the most modalities (ties: the more accurate, listed first)."""
    return max(candidates, key=lambda c: len(config_modalities(c)))


class AgnosticPolicy(Policy):
    name = "agnostic"

    def plan(self, queue: list[Job], now: float) -> None:
        for job in queue:
            for item in job.items:
                item.configuration = full_configuration(item.candidates)


POLICIES: dict[str, type[Policy]] = {"agnostic": AgnosticPolicy}

# Tuned thresholds (TuningRecord.thresholds) a live policy takes, with their types.
# "max_round_items" is the dispatcher's; "grid_step" applies offline (`mosel solve --step`).
POLICY_THRESHOLDS = {"budget_margin": float, "lookahead": int, "upgrade_hysteresis": float, "max_round_items": int}


def apply_thresholds(policy: Policy, thresholds: dict[str, float]) -> dict[str, float]:
    """Set the thresholds this policy has; returns what was applied."""
    applied = {}
    for name, kind in POLICY_THRESHOLDS.items():
        if name in thresholds and hasattr(policy, name):
            value = kind(thresholds[name])
            configure = getattr(policy, "configure", None)
            if configure is not None:
                configure(**{name: value})
            else:
                setattr(policy, name, value)
            applied[name] = value
    return applied


def bind_pipeline_depth(policy: Policy, depth: int) -> None:
    """Tell a predicting policy how many rounds its dispatcher (or simulator) keeps in
    flight, so it predicts the pipeline it runs in."""
    if hasattr(policy, "pipeline_depth"):
        policy.configure(pipeline_depth=depth)


def make_policy(name: str, **kwargs) -> Policy:
    try:
        return POLICIES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(POLICIES)}") from None


# Profile-driven policies (aggressive, mosel) register themselves in POLICIES on import;
# a plain module import keeps this cycle-safe whichever module is imported first.
import mosel.scheduling.policies  # noqa: E402,F401
