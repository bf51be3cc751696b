"""The search space of a tuning study: the online scheduler's thresholds.

Every name below is what a TuningRecord stores in its `thresholds` map, and what the
selection service applies to its live policy:

- budget_margin       MoselPolicy(budget_margin=...): fraction of the time left to a job's
                      deadline the plan may use; float in [0.6, 1.0].
- lookahead           MoselPolicy(lookahead=...): jobs re-planned past the first predicted
                      miss; int in [4, 128], sampled on a log scale.
- upgrade_hysteresis  MoselPolicy(upgrade_hysteresis=...): while some queued job is degraded,
                      full accuracy comes back only below budget_margin * (1 - hysteresis);
                      float in [0, 0.2].
- max_round_items     MoselPolicy(max_round_items=...) AND the dispatcher's round size
                      (simulate(..., max_round_items=...)); one of 8, 16, 24, 32.
- grid_step           accuracy-target grid step of the strategy matrix (solve_matrix(step=...));
                      one of 0.001, 0.002, 0.005. The matrix is re-solved per distinct step
                      (cached, see MatrixCache).

Stored as doubles (the proto's map<string, double>); `from_record` turns them back into
the Python types. MoselPolicy's other kwargs (time_cap_s, unit_s) are not tuned and not
stored: unit_s belongs to the latency profile, time_cap_s to the machine.

DEFAULT_THRESHOLDS are the code defaults (MoselPolicy's signature and solve_matrix's step),
read from the code so they cannot drift.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from mosel.scheduling.mosel_policy import MoselPolicy
from mosel.planning.solver import solve_matrix

BUDGET_MARGIN = (0.6, 1.0)
LOOKAHEAD = (4, 128)
UPGRADE_HYSTERESIS = (0.0, 0.2)
MAX_ROUND_ITEMS = (8, 16, 24, 32)
GRID_STEPS = (0.001, 0.002, 0.005)

# Threshold names that are MoselPolicy constructor kwargs.
POLICY_KEYS = ("budget_margin", "lookahead", "upgrade_hysteresis", "max_round_items")
THRESHOLD_KEYS = POLICY_KEYS + ("grid_step",)
INT_KEYS = ("lookahead", "max_round_items")


def _default(fn: Callable, name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


DEFAULT_THRESHOLDS: dict[str, Any] = {
    **{k: _default(MoselPolicy.__init__, k) for k in POLICY_KEYS},
    "grid_step": _default(solve_matrix, "step"),
}


def suggest(trial) -> dict[str, Any]:
    """Sample one point of the space on an optuna trial."""
    return {
        "budget_margin": trial.suggest_float("budget_margin", *BUDGET_MARGIN),
        "lookahead": trial.suggest_int("lookahead", *LOOKAHEAD, log=True),
        "upgrade_hysteresis": trial.suggest_float("upgrade_hysteresis", *UPGRADE_HYSTERESIS),
        "max_round_items": trial.suggest_categorical("max_round_items", list(MAX_ROUND_ITEMS)),
        "grid_step": trial.suggest_categorical("grid_step", list(GRID_STEPS)),
    }


def policy_kwargs(thresholds: Mapping[str, Any], unit_s: float = 1e-3) -> dict[str, Any]:
    """MoselPolicy(**policy_kwargs(t)) for thresholds t."""
    kw = {k: thresholds[k] for k in POLICY_KEYS}
    kw["lookahead"] = int(kw["lookahead"])
    kw["max_round_items"] = int(kw["max_round_items"])
    kw["unit_s"] = unit_s
    return kw


def to_record(thresholds: Mapping[str, Any]) -> dict[str, float]:
    """The TuningRecord.thresholds map (every THRESHOLD_KEYS entry, as float)."""
    missing = [k for k in THRESHOLD_KEYS if k not in thresholds]
    if missing:
        raise ValueError(f"thresholds lack {missing}")
    return {k: float(thresholds[k]) for k in THRESHOLD_KEYS}


def from_record(values: Mapping[str, float]) -> dict[str, Any]:
    """Inverse of to_record (ints back to int); unknown names are ignored, missing ones default."""
    out = dict(DEFAULT_THRESHOLDS)
    for k in THRESHOLD_KEYS:
        if k in values:
            out[k] = int(round(values[k])) if k in INT_KEYS else float(values[k])
    return out


class MatrixCache:
    """One strategy matrix per grid step, solved on first use from (cost, accuracies).

    `preset` seeds the cache (e.g. the stored matrix for the step it was solved with)."""

    def __init__(self, cost, accuracies: Mapping[str, float], max_batch: int, preset: Mapping[float, Any] | None = None):
        self.cost = cost
        self.accuracies = dict(accuracies)
        self.max_batch = int(max_batch)
        self._matrices: dict[float, Any] = {round(float(k), 9): v for k, v in (preset or {}).items()}
        self.solves = 0

    def get(self, step: float):
        key = round(float(step), 9)
        if key not in self._matrices:
            self._matrices[key] = solve_matrix(self.cost, self.accuracies, max_batch=self.max_batch, step=key)
            self.solves += 1
        return self._matrices[key]
