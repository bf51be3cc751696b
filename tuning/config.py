"""What a tuning study is: its objectives, its workload (`WorkloadSpec`), the whole
configuration a worker process needs to join it (`TuneConfig`), its deterministic name, and
the command line of one worker process (`WorkerSettings`).

Study name: deterministic from (model, canonical workload spec, objectives, seed), so every
process started with the same arguments joins the same study (load_if_exists=True):

    tune-<model>-<workload>-<objectives>-s<seed>, e.g. tune-paper-paper-rate40-duration30-delta17-goodput+accuracy-s0

Held-out workload: the same generator with another seed (seed + HELDOUT_SEED_OFFSET), taking
the segment [duration, 2 * duration) of a run twice as long (shifted to start at 0).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Sequence

from mosel.config import mosel_home
from mosel.engine.settings import SelectionSettings
from mosel.server.settings import Settings, setting
from mosel.sim import simulator as S

OBJECTIVES: dict[str, tuple[str, str]] = {
    "goodput": ("goodput_rps", "maximize"),
    "accuracy": ("mean_accuracy", "maximize"),
    "p99": ("p99_jct_ms", "minimize"),
}
DEFAULT_OBJECTIVES = ("goodput", "accuracy")
DEFAULT_NOISE = 0.05
HELDOUT_SEED_OFFSET = 1_000_003
CONSTRAINT = "floor_violations"  # what a trial records its floor violations as (> 0 = infeasible)


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
    # rounds in flight in the selection service the pick is for (its --pipeline-depth)
    pipeline_depth: int = SelectionSettings.default("pipeline_depth")

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise ValueError(f"unknown objectives {unknown} (known: {sorted(OBJECTIVES)})")
        self.workload = WorkloadSpec.parse(self.workload).canonical()
        self.service.validate()  # pipeline_depth as the service checks it (the error names --pipeline-depth)

    @property
    def service(self) -> SelectionSettings:
        """The selection service the pick is for, as far as a replay models it: the mosel policy
        (with the service's default reply margin and miss feedback) at this pipeline depth."""
        return SelectionSettings(policy="mosel", pipeline_depth=self.pipeline_depth)

    @property
    def workload_spec(self) -> WorkloadSpec:
        return WorkloadSpec.parse(self.workload)

    @property
    def study_name(self) -> str:
        name = self.study or study_name(self.model, self.workload_spec, self.objectives, self.seed)
        if not self.study and self.pipeline_depth != SelectionSettings.default("pipeline_depth"):
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


@dataclass(frozen=True, kw_only=True)
class WorkerSettings(Settings):
    """One worker process of a study: `python -m tuning.study --config JSON --trials N`."""

    MODULE = "tuning.study"
    DESCRIPTION = "one tuning worker process"

    config: str = setting(help="TuneConfig as JSON")
    trials: int = setting(help="trials to run in this process", at_least=0)
    worker_index: int = setting(0, "offsets the sampler seed; each worker of a study has its own", at_least=0)

    @property
    def tune_config(self) -> TuneConfig:
        return TuneConfig.from_json(self.config)
