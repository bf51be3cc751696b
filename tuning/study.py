"""Building and running a tuning study (Optuna, replayed on the simulator).

A trial samples thresholds (tuning.space), builds `MoselPolicy(**policy_kwargs)` — the
scheduler class the selection service runs — and replays the study's workload through
mosel.sim.simulator.simulate with `max_round_items` as the round size, the strategy matrix
solved for the trial's `grid_step` and the service's pipeline depth (`--pipeline-depth`,
default the service's). Objectives (Summary fields of the run):

    goodput   goodput_rps    maximise  requests finished by their deadline with the floor met, per s
    accuracy  mean_accuracy  maximise  request-weighted accuracy of the finished requests
    p99       p99_jct_ms     minimise  (only with --p99) 99th-percentile job completion time

Every trial also records the run's floor violations as an Optuna constraint
(`trial.set_constraint("floor_violations", n)`, > 0 = infeasible). This is Optuna 5's
replacement of NSGAIISampler(constraints_func=...) (deprecated in 5.0): NSGA-II's
constrained domination, `study.best_trials` and `pareto_front` below all read it, so a trial
that broke a floor is never on the front and never picked. `constraints(trial)` is the
constraints_func view of the same numbers.

Sampler: NSGAIISampler(seed=seed + 7919 * worker_index, population_size=...). The first
trial of a new study is the code defaults (enqueued), so the front is always compared with
them.

Storage: `sqlite:///<MOSEL_HOME>/tuning/optuna.db` by default; any SQLAlchemy URL
(`postgresql+psycopg://user@host:5432/db`; a plain `postgresql://` URL is rewritten to the
psycopg 3 driver), or `journal:<path>` for Optuna's JournalStorage on a file (safe for
several processes on one machine without a database).

Study name: deterministic from (model, canonical workload spec, objectives, seed), so every
process started with the same arguments joins the same study (load_if_exists=True):

    tune-<model>-<workload>-<objectives>-s<seed>, e.g. tune-paper-paper-rate40-duration30-delta17-goodput+accuracy-s0

Scale-out:
- one machine: `mosel tune ... --workers N` starts N processes (`python -m tuning.study`,
  this module) on the same storage and study, with the trials split between them;
- several machines: run the same command on each, against one shared database, giving each
  machine its own `--worker-index` (it only offsets the sampler seed):

      mosel tune --model av-digits --trials 200 --workers 8 --worker-index K \\
          --storage postgresql+psycopg://mosel@db-host:5432/optuna --no-store

  then, once they are done, `mosel tune ... --trials 0` (same arguments) on any one of them
  reports the front, validates the pick and stores it.

Dashboard: `optuna-dashboard sqlite:///$MOSEL_HOME/tuning/optuna.db` (or the --storage URL,
or the journal file path) shows the same studies live; optuna-dashboard is a separate
`pip install optuna-dashboard`.

Held-out validation: the chosen thresholds and the defaults are replayed on a workload the
study never saw: the same generator with another seed (seed + HELDOUT_SEED_OFFSET), taking
the segment [duration, 2 * duration) of a run twice as long (shifted to start at 0).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import optuna

from mosel.sim import simulator as S
from mosel.config import mosel_home, repo_root
from mosel.scheduling.mosel_policy import MoselPolicy
from mosel.scheduling.predict import DEFAULT_PIPELINE_DEPTH
from tuning import space
from tuning.models import TuningModel, load_model

OBJECTIVES: dict[str, tuple[str, str]] = {
    "goodput": ("goodput_rps", "maximize"),
    "accuracy": ("mean_accuracy", "maximize"),
    "p99": ("p99_jct_ms", "minimize"),
}
DEFAULT_OBJECTIVES = ("goodput", "accuracy")
DEFAULT_NOISE = 0.05
HELDOUT_SEED_OFFSET = 1_000_003
SAMPLER_SEED_STRIDE = 7919
CONSTRAINT = "floor_violations"
DEFAULT_PICK = "goodput|accuracy>=best-0.005"
METRICS = ("goodput_rps", "mean_accuracy", "p99_jct_ms", "mean_jct_ms", "throughput_rps", "miss_rate",
           "floor_violations", "jobs", "requests")


# ----------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class WorkloadSpec:
    """`paper[:rate=R,duration=S,delta=D]`: mosel.sim.simulator.paper_workload at R jobs/s for S
    virtual seconds, deadline slack D ms (defaults 40, 30, 17)."""

    kind: str = "paper"
    rate: float = 40.0
    duration: float = 30.0
    delta_ms: float = 17.0

    @classmethod
    def parse(cls, text: str) -> "WorkloadSpec":
        kind, _, rest = text.strip().partition(":")
        if kind != "paper":
            raise ValueError(f"unknown workload {kind!r} (known: paper)")
        values: dict[str, float] = {}
        names = {"rate": "rate", "duration": "duration", "delta": "delta_ms"}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq or key.strip() not in names:
                raise ValueError(f"workload option {part!r}: expected rate=R, duration=S or delta=D")
            try:
                values[names[key.strip()]] = float(value)
            except ValueError:
                raise ValueError(f"workload option {part!r}: {value!r} is not a number") from None
        spec = cls(kind, **values)
        if spec.rate <= 0 or spec.duration <= 0 or spec.delta_ms < 0:
            raise ValueError(f"workload {text!r}: rate and duration must be > 0, delta >= 0")
        return spec

    def canonical(self) -> str:
        return f"{self.kind}:rate={_num(self.rate)},duration={_num(self.duration)},delta={_num(self.delta_ms)}"

    def slug(self) -> str:
        return f"{self.kind}-rate{_num(self.rate)}-duration{_num(self.duration)}-delta{_num(self.delta_ms)}"

    def _jobs(self, sim_model: S.SimModel, duration: float, seed: int, max_size: int) -> list[S.SimJob]:
        return S.paper_workload(sim_model, self.rate, duration, seed=seed, slack_ms=self.delta_ms, max_size=max_size)

    def study_jobs(self, sim_model: S.SimModel, seed: int, max_size: int = 32) -> list[S.SimJob]:
        return self._jobs(sim_model, self.duration, seed, max_size)

    def heldout_jobs(self, sim_model: S.SimModel, seed: int, max_size: int = 32) -> list[S.SimJob]:
        """Another seed, and the later segment [duration, 2*duration) of that run, moved to 0."""
        jobs = self._jobs(sim_model, 2 * self.duration, seed + HELDOUT_SEED_OFFSET, max_size)
        t0 = self.duration
        return [S.SimJob(arrival=j.arrival - t0, size=j.size, min_accuracy=j.min_accuracy, deadline=j.deadline - t0,
                         id=j.id) for j in jobs if j.arrival >= t0]


def _num(x: float) -> str:
    return f"{x:g}"


# ----------------------------------------------------------------------------- configuration


@dataclass
class TuneConfig:
    """Everything a worker process needs to join a study (JSON-serialisable)."""

    model: str = "paper"
    workload: str = "paper"
    seed: int = 0
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    noise: float = DEFAULT_NOISE
    storage: str | None = None
    study: str | None = None
    store: str | None = None  # profile store address for registered models
    population: int = 50
    pipeline_depth: int = DEFAULT_PIPELINE_DEPTH  # rounds in flight in the service the pick is for

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise ValueError(f"unknown objectives {unknown} (known: {sorted(OBJECTIVES)})")
        self.workload = WorkloadSpec.parse(self.workload).canonical()
        if self.pipeline_depth < 1:
            raise ValueError(f"pipeline_depth must be >= 1, got {self.pipeline_depth}")

    @property
    def workload_spec(self) -> WorkloadSpec:
        return WorkloadSpec.parse(self.workload)

    @property
    def study_name(self) -> str:
        name = self.study or study_name(self.model, self.workload_spec, self.objectives, self.seed)
        if not self.study and self.pipeline_depth != DEFAULT_PIPELINE_DEPTH:
            name += f"-depth{self.pipeline_depth}"  # other replays: not the same study
        return name

    @property
    def storage_url(self) -> str:
        return self.storage or default_storage()

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o][1] for o in self.objectives]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TuneConfig":
        return cls(**json.loads(text))


def study_name(model: str, workload: WorkloadSpec | str, objectives: Sequence[str], seed: int) -> str:
    spec = WorkloadSpec.parse(workload) if isinstance(workload, str) else workload
    return f"tune-{model}-{spec.slug()}-{'+'.join(objectives)}-s{int(seed)}"


def default_storage() -> str:
    return f"sqlite:///{mosel_home() / 'tuning' / 'optuna.db'}"


def make_storage(url: str):
    """An optuna storage for `url` (see the module doc)."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:"):]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # several worker processes wait for the file lock
    if url.startswith("postgresql"):
        engine_kwargs["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    """Replays one workload through the simulator under given thresholds."""

    def __init__(self, model: TuningModel, specs: Sequence[S.SimJob], noise: float = DEFAULT_NOISE, seed: int = 0,
                 pipeline_depth: int = DEFAULT_PIPELINE_DEPTH):
        self.model = model
        self.specs = list(specs)
        self.noise = float(noise)
        self.seed = int(seed)
        self.pipeline_depth = int(pipeline_depth)

    def evaluate(self, thresholds: Mapping[str, Any]) -> S.Summary:
        sim_model = self.model.sim_model(thresholds["grid_step"])
        policy = MoselPolicy(**space.policy_kwargs(thresholds, unit_s=self.model.unit_s))
        return S.simulate(self.specs, policy, sim_model, max_round_items=int(thresholds["max_round_items"]),
                          unit_s=self.model.unit_s, noise=self.noise, seed=self.seed,
                          pipeline_depth=self.pipeline_depth).summary


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
            trial.set_user_attr(k, _json_safe(v))
        trial.set_user_attr(CONSTRAINT, n)
        trial.set_constraint(CONSTRAINT, float(n))
        return objective_values(summary, objectives)

    return objective


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def study_evaluator(config: TuneConfig, model: TuningModel) -> Evaluator:
    spec = config.workload_spec
    jobs = spec.study_jobs(model.sim_model(space.DEFAULT_THRESHOLDS["grid_step"]), config.seed,
                           max_size=min(32, model.max_batch))
    return Evaluator(model, jobs, config.noise, config.seed, config.pipeline_depth)


def heldout_evaluator(config: TuneConfig, model: TuningModel) -> Evaluator:
    spec = config.workload_spec
    jobs = spec.heldout_jobs(model.sim_model(space.DEFAULT_THRESHOLDS["grid_step"]), config.seed,
                             max_size=min(32, model.max_batch))
    return Evaluator(model, jobs, config.noise, config.seed + HELDOUT_SEED_OFFSET, config.pipeline_depth)


# ----------------------------------------------------------------------------- running


def open_study(config: TuneConfig, worker_index: int = 0) -> optuna.Study:
    sampler = optuna.samplers.NSGAIISampler(seed=config.seed + SAMPLER_SEED_STRIDE * worker_index,
                                            population_size=config.population)
    return optuna.create_study(study_name=config.study_name, storage=make_storage(config.storage_url),
                               directions=config.directions, sampler=sampler, load_if_exists=True)


def prepare_study(config: TuneConfig) -> optuna.Study:
    """Create (or load) the study; a new one gets the code defaults as its first trial."""
    study = open_study(config)
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(dict(space.DEFAULT_THRESHOLDS))
    return study


def run_trials(config: TuneConfig, n_trials: int, worker_index: int = 0, progress: bool = False,
               model: TuningModel | None = None, violations=None) -> optuna.Study:
    """Run n_trials trials of the study in this process."""
    model = model or load_model(config.model, config.store)
    study = open_study(config, worker_index)
    objective = make_objective(study_evaluator(config, model), config.objectives, violations)
    if n_trials > 0:
        study.optimize(objective, n_trials=n_trials, show_progress_bar=progress)
    return study


def split_trials(n_trials: int, workers: int) -> list[int]:
    workers = max(1, int(workers))
    base, extra = divmod(int(n_trials), workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def worker_command(config: TuneConfig, n_trials: int, worker_index: int) -> list[str]:
    return [sys.executable, "-m", "tuning.study", "--config", config.to_json(), "--trials", str(n_trials),
            "--worker-index", str(worker_index)]


def spawn_workers(config: TuneConfig, n_trials: int, workers: int, first_index: int = 0,
                  progress: bool = True) -> list[int]:
    """Run the trials in `workers` separate processes on the study's storage; returns their exit
    codes. The parent shows one progress bar fed from the storage."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo_root()), env.get("PYTHONPATH", "")]))
    study = open_study(config)
    done0 = _finished(study)
    procs = []
    for i, n in enumerate(split_trials(n_trials, workers)):
        if n > 0:
            procs.append(subprocess.Popen(worker_command(config, n, first_index + i), env=env, cwd=str(repo_root())))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_trials, desc=f"{config.study_name} ({len(procs)} workers)", unit="trial")
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            if bar is not None:
                bar.n = min(n_trials, _finished(study) - done0)
                bar.refresh()
        if bar is not None:
            bar.n = min(n_trials, _finished(study) - done0)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
    return [p.wait() for p in procs]


def _finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


# ----------------------------------------------------------------------------- front and pick


def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
    """constraints_func view: [floor violations] (> 0 = infeasible)."""
    values = trial.constraints
    if values:
        return [float(values.get(CONSTRAINT, max(values.values())))]
    return [float(trial.user_attrs.get(CONSTRAINT, 0))]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return (trial.state == optuna.trial.TrialState.COMPLETE and all(v <= 0 for v in trial.constraints.values())
            and trial.user_attrs.get(CONSTRAINT, 0) <= 0)


def _dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        if x > y:
            better = True
    return better


def pareto_front(trials: Sequence[optuna.trial.FrozenTrial], directions: Sequence[str]) -> list[optuna.trial.FrozenTrial]:
    """Feasible completed trials no other feasible trial dominates (duplicates of a point: the
    lowest trial number), by trial number."""
    ok = [t for t in trials if feasible(t)]
    front = [t for t in ok if not any(_dominates(o.values, t.values, directions) for o in ok if o is not t)]
    seen: set[tuple] = set()
    out = []
    for t in sorted(front, key=lambda t: t.number):
        key = tuple(t.values)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out


class PickError(ValueError):
    pass


@dataclass
class PickRule:
    """`TARGET[|COND[,COND...]]` — among the Pareto points meeting every COND, the best TARGET.

    TARGET: an objective name (goodput, accuracy: maximised; p99: minimised).
    COND:   NAME>=VALUE or NAME<=VALUE; VALUE is a number, `best`, or `best-D` / `best+D`
            where best is the best value of NAME among the Pareto points.
    Default: `goodput|accuracy>=best-0.005` (highest goodput among the points whose accuracy is
    within 0.005 of the most accurate Pareto point). Examples: `goodput|accuracy>=0.74`,
    `accuracy`, `goodput|accuracy>=best-0.01,p99<=150`. Ties: the other objectives, then the
    lowest trial number."""

    target: str
    conditions: list[tuple[str, str, str, float]] = field(default_factory=list)  # (name, op, base, offset)
    text: str = ""

    _COND = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*(best\s*([+-])\s*([0-9.eE+-]+)|best|[-+]?[0-9.eE+-]+)\s*$")

    @classmethod
    def parse(cls, text: str) -> "PickRule":
        target, _, rest = text.partition("|")
        target = target.strip()
        if target not in OBJECTIVES:
            raise PickError(f"pick rule {text!r}: target {target!r} is not an objective ({', '.join(OBJECTIVES)})")
        conds = []
        for part in filter(None, (p.strip() for p in rest.split(","))) if rest.strip() else []:
            m = cls._COND.match(part)
            if not m:
                raise PickError(f"pick rule {text!r}: cannot read condition {part!r} (NAME>=VALUE or NAME<=VALUE)")
            name, op, value = m.group(1), m.group(2), m.group(3).replace(" ", "")
            if name not in OBJECTIVES:
                raise PickError(f"pick rule {text!r}: {name!r} is not an objective ({', '.join(OBJECTIVES)})")
            if value == "best":
                conds.append((name, op, "best", 0.0))
            elif value.startswith("best"):
                try:
                    offset = float(m.group(5))
                except ValueError:
                    raise PickError(f"pick rule {text!r}: bad offset in {part!r}") from None
                conds.append((name, op, "best", offset if m.group(4) == "+" else -offset))
            else:
                try:
                    conds.append((name, op, "", float(value)))
                except ValueError:
                    raise PickError(f"pick rule {text!r}: {value!r} is not a number") from None
        return cls(target, conds, text)

    def choose(self, front: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[str]) -> optuna.trial.FrozenTrial:
        names = list(objectives)
        for name in [self.target] + [c[0] for c in self.conditions]:
            if name not in names:
                raise PickError(f"pick rule {self.text!r} uses {name!r}, which this study does not optimise "
                                f"(objectives: {', '.join(names)})")
        front = [t for t in front if feasible(t)]
        if not front:
            raise PickError("no feasible trial to pick from (every trial violated a floor, or none finished)")

        def value(t, name):
            return t.values[names.index(name)]

        def sign(name):
            return 1.0 if OBJECTIVES[name][1] == "maximize" else -1.0

        candidates = list(front)
        for name, op, base, offset in self.conditions:
            bound = offset
            if base == "best":
                bound = max(value(t, name) * sign(name) for t in front) * sign(name) + offset
            if op == ">=":
                candidates = [t for t in candidates if value(t, name) >= bound - 1e-12]
            else:
                candidates = [t for t in candidates if value(t, name) <= bound + 1e-12]
        if not candidates:
            raise PickError(f"no Pareto point satisfies the pick rule {self.text!r}")
        order = [self.target] + [n for n in names if n != self.target]
        return min(candidates, key=lambda t: (tuple(-sign(n) * value(t, n) for n in order), t.number))


def thresholds_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return space.from_record({k: float(v) for k, v in trial.params.items()})


# ----------------------------------------------------------------------------- validation


def validate(config: TuneConfig, model: TuningModel, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Chosen thresholds vs the code defaults on the held-out workload (see the module doc)."""
    ev = heldout_evaluator(config, model)
    tuned = metrics(ev.evaluate(chosen))
    default = metrics(ev.evaluate(space.DEFAULT_THRESHOLDS))
    gain = tuned["goodput_rps"] - default["goodput_rps"]
    beats = gain > 1e-9
    if beats:
        verdict = (f"tuned thresholds beat the defaults on held-out goodput: {tuned['goodput_rps']:.2f} vs "
                   f"{default['goodput_rps']:.2f} req/s ({gain:+.2f})")
    else:
        verdict = (f"tuned thresholds do NOT beat the defaults on held-out goodput: {tuned['goodput_rps']:.2f} vs "
                   f"{default['goodput_rps']:.2f} req/s ({gain:+.2f}); the study may have overfit its workload")
    if tuned["floor_violations"]:
        verdict += f"; tuned thresholds violated {tuned['floor_violations']} floors on the held-out workload"
    out = {
        "workload": config.workload,
        "heldout": {"seed": config.seed + HELDOUT_SEED_OFFSET, "segment_s": [config.workload_spec.duration,
                                                                            2 * config.workload_spec.duration],
                    "jobs": len(ev.specs), "noise": config.noise},
        "tuned_thresholds": space.to_record(chosen),
        "default_thresholds": space.to_record(space.DEFAULT_THRESHOLDS),
        "tuned": tuned,
        "default": default,
        "goodput_gain_rps": gain,
        "tuned_beats_default": beats,
        "verdict": verdict,
    }
    return json.loads(json.dumps(out, default=_json_safe), parse_constant=lambda _c: None)


def validation_json(validation: Mapping[str, Any]) -> str:
    return json.dumps(_strip_nan(validation), sort_keys=True, allow_nan=False)


def _strip_nan(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _strip_nan(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strip_nan(x) for x in v]
    return v


def make_record(model: TuningModel, study: str, objectives: Sequence[str], chosen: optuna.trial.FrozenTrial,
                validation: Mapping[str, Any]):
    """The TuningRecord handed to the profile store (model must be registered)."""
    from mosel.protocol.v1 import profile_store_pb2 as pb

    return pb.TuningRecord(
        model=model.name,
        thresholds=space.to_record(thresholds_of(chosen)),
        strategy_matrix_version=model.strategy_matrix_version,
        latency_profile_version=model.latency_profile_version,
        study=study,
        objectives={OBJECTIVES[o][0]: float(v) for o, v in zip(objectives, chosen.values)},
        validation_json=validation_json(validation),
    )


# ----------------------------------------------------------------------------- worker entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuning.study", description="one tuning worker process")
    parser.add_argument("--config", required=True, help="TuneConfig as JSON")
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--worker-index", type=int, default=0)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_trials(TuneConfig.from_json(args.config), args.trials, worker_index=args.worker_index, progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
