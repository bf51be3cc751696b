"""Scoring one point of a study: replay its workload on the simulator under the trial's
thresholds and turn the run's Summary into the study's objectives.

A trial samples thresholds (tuning.space) and builds the policy the selection service would
run with them (`SelectionSettings.build_policy`, mosel with the service's reply margin and
miss feedback, the thresholds on top), then replays the workload through
mosel.sim.simulator.simulate with `max_round_items` as the round size, the strategy matrix
solved for the trial's `grid_step` and the service's pipeline depth (`--pipeline-depth`,
default the service's). Objectives (Summary fields of the run):

    goodput   goodput_rps    maximise  requests finished by their deadline with the floor met, per s
    accuracy  mean_accuracy  maximise  request-weighted accuracy of the finished requests
    p99       p99_jct_ms     minimise  (only with --p99) 99th-percentile job completion time

Every trial also records the run's floor violations as an Optuna constraint
(`trial.set_constraint("floor_violations", n)`, > 0 = infeasible). This is Optuna 5's
replacement of NSGAIISampler(constraints_func=...) (deprecated in 5.0): NSGA-II's
constrained domination, `study.best_trials` and tuning.pareto all read it, so a trial that
broke a floor is never on the front and never picked.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import optuna

from mosel.engine.settings import SelectionSettings
from mosel.sim import simulator as S
from tuning import space
from tuning.config import CONSTRAINT, DEFAULT_NOISE, HELDOUT_SEED_OFFSET, OBJECTIVES, TuneConfig
from tuning.models import TuningModel

METRICS = ("goodput_rps", "mean_accuracy", "p99_jct_ms", "mean_jct_ms", "throughput_rps", "miss_rate",
           "floor_violations", "jobs", "requests")


class Evaluator:
    """Replays one workload through the simulator under given thresholds, on the selection
    service `service` describes."""

    def __init__(self, model: TuningModel, specs: Sequence[S.SimJob], service: SelectionSettings,
                 noise: float = DEFAULT_NOISE, seed: int = 0):
        self.model = model
        self.specs = list(specs)
        self.service = service
        self.noise = float(noise)
        self.seed = int(seed)

    def evaluate(self, thresholds: Mapping[str, Any]) -> S.Summary:
        sim_model = self.model.sim_model(thresholds["grid_step"])
        policy = self.service.build_policy(**space.policy_kwargs(thresholds, unit_s=self.model.unit_s))
        return S.simulate(self.specs, policy, sim_model, max_round_items=int(thresholds["max_round_items"]),
                          unit_s=self.model.unit_s, noise=self.noise, seed=self.seed,
                          pipeline_depth=self.service.pipeline_depth).summary


def metrics(summary: S.Summary) -> dict[str, Any]:
    return {k: getattr(summary, k) for k in METRICS}


def objective_values(summary: S.Summary, objectives: Sequence[str]) -> list[float]:
    out = []
    for name in objectives:
        attr, direction = OBJECTIVES[name]
        v = float(getattr(summary, attr))
        if not math.isfinite(v):  # nothing finished: worst possible value
            v = 0.0 if direction == "maximize" else 1e9
        out.append(v)
    return out


def make_objective(evaluator: Evaluator, objectives: Sequence[str],
                   violations: Callable[[dict, S.Summary], int] | None = None):
    """The optuna objective. `violations` (tests) may override how floor violations are counted;
    by default it is the simulator's Summary.floor_violations."""

    def objective(trial: optuna.Trial) -> list[float]:
        thresholds = space.suggest(trial)
        summary = evaluator.evaluate(thresholds)
        n = int(violations(thresholds, summary) if violations else summary.floor_violations)
        for k, v in metrics(summary).items():
            trial.set_user_attr(k, json_safe(v))
        trial.set_user_attr(CONSTRAINT, n)
        trial.set_constraint(CONSTRAINT, float(n))
        return objective_values(summary, objectives)

    return objective


def json_safe(v: Any) -> Any:
    """`v` with every non-finite float as None and tuples as lists, so it is valid JSON (a run
    that finished nothing has NaN metrics; Optuna's user attributes and the store want JSON)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def study_evaluator(config: TuneConfig, model: TuningModel) -> Evaluator:
    spec = config.workload_spec
    jobs = spec.study_jobs(model.sim_model(space.DEFAULT_THRESHOLDS["grid_step"]), config.seed,
                           max_size=min(32, model.max_batch))
    return Evaluator(model, jobs, config.service, config.noise, config.seed)


def heldout_evaluator(config: TuneConfig, model: TuningModel) -> Evaluator:
    spec = config.workload_spec
    jobs = spec.heldout_jobs(model.sim_model(space.DEFAULT_THRESHOLDS["grid_step"]), config.seed,
                             max_size=min(32, model.max_batch))
    return Evaluator(model, jobs, config.service, config.noise, config.seed + HELDOUT_SEED_OFFSET)
