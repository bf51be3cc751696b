"""The policy interface: which configuration each queued request runs with.

A policy sees the queue in EDF order and only touches jobs that have not started. The
dispatcher (mosel.engine.dispatcher) and the simulator (mosel.sim.simulator) drive a policy
through the same calls, so a policy behaves alike live and on the virtual clock:

- `admit(job, queue, now)` at arrival (raise to refuse at once);
- `plan(queue, now)` before every round, setting `item.configuration` everywhere; jobs it
  judges hopeless go to `drops` (failed without being started);
- the feedback hooks `round_started`, `lane_finished`, `round_finished`, `job_expired`,
  which tell a predicting policy what was committed and what it really cost.

The base class gives every hook a no-op default, so callers never probe for them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from mosel.modalities import config_modalities
from mosel.scheduling.job import Job

# Tuned thresholds (TuningRecord.thresholds) a live policy takes, with their types.
# "max_round_items" is the dispatcher's; "grid_step" applies offline (`mosel solve --step`).
POLICY_THRESHOLDS = {"budget_margin": float, "lookahead": int, "upgrade_hysteresis": float, "max_round_items": int}


class Policy(ABC):
    name = "base"
    # Names `configure` accepts (tuned thresholds among them); empty: nothing to tune.
    tunable: tuple[str, ...] = ()
    # Set by `plan`: jobs to fail now, never started (a class default, so a subclass need
    # not call __init__; policies that drop assign their own list).
    drops: Sequence[Job] = ()

    def admit(self, job: Job, queue: list[Job], now: float) -> None:
        """Raise (e.g. DeadlineExceeded) to refuse a job at once. `queue`: the queued jobs,
        in no particular order. Default: admit."""

    @abstractmethod
    def plan(self, queue: list[Job], now: float) -> None:
        """Set `item.configuration` for every item of every (not started) job in `queue`."""

    def configure(self, **values: Any) -> None:
        """Change settings between plans; a name outside `tunable` is a ValueError."""
        for name, value in values.items():
            if name not in self.tunable:
                raise ValueError(f"{self.name} policy has no setting {name!r}")
            setattr(self, name, value)

    def bind_pipeline_depth(self, depth: int) -> None:
        """Told how many rounds its dispatcher (or simulator) keeps in flight. Default: ignored."""

    # ---- feedback hooks (no-ops unless the policy predicts) ---------------------------
    def round_started(self, jobs: Sequence[Job], now: float) -> Any:
        """A round of `jobs` was committed; returns a ticket passed back to the hooks below."""
        return None

    def lane_finished(self, ticket: Any, lane: int, now: float, measured_s: float | None) -> None:
        """One lane of the round finished its batch (`measured_s`: its compute time, if known)."""

    def round_finished(self, ticket: Any, now: float, finishing_s: float | None) -> None:
        """The round's finishing step (fusion, answers) is done."""

    def job_expired(self, job: Job, now: float) -> None:
        """A queued job's deadline passed before it started: the dispatcher failed it."""

    def planning_headroom_s(self, now: float) -> float:
        """Time the plans currently keep in hand for misses (reported by GetStats); 0 if none."""
        return 0.0


def full_configuration(candidates: list[str]) -> str:
    """The candidate with the most modalities (ties: the more accurate, listed first)."""
    return max(candidates, key=lambda c: len(config_modalities(c)))


def apply_thresholds(policy: Policy, thresholds: dict[str, float]) -> dict[str, float]:
    """Set the tuned thresholds this policy takes; returns what was applied."""
    applied = {name: kind(thresholds[name]) for name, kind in POLICY_THRESHOLDS.items()
               if name in thresholds and name in policy.tunable}
    if applied:
        policy.configure(**applied)
    return applied
