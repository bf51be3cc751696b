"""Workload files: job arrival schedules shared by the simulator, the live open-loop
generator (mosel.sim.loadgen.run_open_loop) and the tuning studies.

A workload is a list of jobs, each with an arrival time (seconds from the start), a size
(requests in the job), an accuracy floor and a deadline *slack*. The deadline itself is not
stored: it depends on the latency model of whoever consumes the workload (paper rule:
deadline = arrival + full-modality latency of a job of that size + slack), so the same file
drives the simulator on any profile and the live stack alike.

File format (JSON, `Workload.save` / `Workload.load`):

    {"format": "mosel-workload", "version": 1,
     "meta": {...generator and parameters...},
     "jobs": [{"arrival_s": 0.013, "size": 3, "min_accuracy": 0.731, "slack_ms": 17.0}, ...]}

Generators:
- `poisson`: the paper's synthetic workload. Poisson arrivals; sizes max(1, int(Normal(1, 6)))
  capped at 32; floors uniform in [best - delta, best].
- `bursty`: a documented stand-in for the paper's trace runs. The paper replayed a normalised
  Twitter trace, which we do not have (no network here); this generator makes a
  non-homogeneous Poisson process whose rate swings as a sine ("diurnal", compressed into the
  run) plus random bursts (exponential inter-burst gaps, fixed multiplier and length). Same
  sizes and floors as `poisson`; slack defaults to 55 ms as in the paper's trace runs.

Both are deterministic for a seed (they use their own `random.Random(seed)`).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "mosel-workload"
VERSION = 1
MAX_JOB_SIZE = 32


@dataclass(frozen=True)
class WorkloadJob:
    arrival_s: float  # seconds from the workload's start
    size: int  # requests in the job (>= 1)
    min_accuracy: float  # the job's accuracy floor alpha
    slack_ms: float  # deadline = arrival + full-modality latency(size) + slack

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"job size must be >= 1, got {self.size}")
        if self.arrival_s < 0 or not math.isfinite(self.arrival_s):
            raise ValueError(f"arrival_s must be finite and >= 0, got {self.arrival_s}")


@dataclass
class Workload:
    jobs: list[WorkloadJob]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def requests(self) -> int:
        return sum(j.size for j in self.jobs)

    @property
    def duration_s(self) -> float:
        return float(self.meta.get("duration_s", max((j.arrival_s for j in self.jobs), default=0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": dict(self.meta),
                "jobs": [asdict(j) for j in self.jobs]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Workload":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a workload file (format={d.get('format')!r}, expected {FORMAT!r})")
        if d.get("version") != VERSION:
            raise ValueError(f"workload version {d.get('version')!r} not supported (expected {VERSION})")
        jobs = [WorkloadJob(float(j["arrival_s"]), int(j["size"]), float(j["min_accuracy"]), float(j["slack_ms"]))
                for j in d["jobs"]]
        return cls(jobs, dict(d.get("meta", {})))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Workload":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def scaled(self, factor: float) -> "Workload":
        """The same jobs with arrivals compressed by `factor` (rate x factor)."""
        if factor <= 0:
            raise ValueError("factor must be > 0")
        jobs = [WorkloadJob(j.arrival_s / factor, j.size, j.min_accuracy, j.slack_ms) for j in self.jobs]
        meta = dict(self.meta, rate_scale=self.meta.get("rate_scale", 1.0) * factor,
                    duration_s=self.duration_s / factor)
        return Workload(jobs, meta)


def paper_job_size(rng: random.Random, max_size: int = MAX_JOB_SIZE) -> int:
    """max(1, int(Normal(1, 6))) capped at max_size (the paper's job sizes)."""
    return min(max_size, max(1, int(rng.gauss(1.0, 6.0))))


def _job(rng: random.Random, t: float, delta: float, best: float, slack_ms: float, max_size: int) -> WorkloadJob:
    size = paper_job_size(rng, max_size)
    floor = rng.uniform(best - delta, best)
    return WorkloadJob(arrival_s=t, size=size, min_accuracy=floor, slack_ms=slack_ms)


def poisson(rate_jobs_per_s: float, duration_s: float, delta: float, best_accuracy: float, seed: int,
            slack_ms: float = 17.0, max_size: int = MAX_JOB_SIZE) -> Workload:
    """The paper's synthetic workload: Poisson arrivals at `rate_jobs_per_s` for `duration_s`."""
    if rate_jobs_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be > 0")
    if delta < 0:
        raise ValueError("delta must be >= 0")
    rng = random.Random(seed)
    t, jobs = 0.0, []
    while True:
        t += rng.expovariate(rate_jobs_per_s)
        if t > duration_s:
            break
        jobs.append(_job(rng, t, delta, best_accuracy, slack_ms, max_size))
    meta = {"generator": "poisson", "rate_jobs_per_s": rate_jobs_per_s, "duration_s": duration_s, "delta": delta,
            "best_accuracy": best_accuracy, "seed": seed, "slack_ms": slack_ms, "max_size": max_size,
            "size_distribution": "max(1, int(Normal(1, 6))) capped at max_size",
            "floor_distribution": "uniform [best - delta, best]"}
    return Workload(jobs, meta)


def bursty_rate(t: float, mean_rate: float, duration_s: float, swing: float, periods: float) -> float:
    """The diurnal part of `bursty`'s rate at time t (before bursts)."""
    return mean_rate * (1.0 + swing * math.sin(2.0 * math.pi * periods * t / duration_s))


def bursty(mean_rate: float, duration_s: float, delta: float, best_accuracy: float, seed: int,
           slack_ms: float = 55.0, swing: float = 0.5, periods: float = 1.0, burst_every_s: float | None = None,
           burst_len_s: float | None = None, burst_factor: float = 3.0, max_size: int = MAX_JOB_SIZE) -> Workload:
    """A bursty trace (stand-in for the paper's normalised Twitter trace, which we do not have).

    Rate(t) = mean_rate * (1 + swing * sin(2 pi periods t / duration)) * (burst_factor inside a
    burst, else 1). Bursts start at exponential gaps of mean `burst_every_s` (default
    duration / 4) and last `burst_len_s` (default duration / 20). Arrivals are drawn by
    thinning a Poisson process at the peak rate, so the process is exact. The long-run mean
    rate is above `mean_rate` by the bursts' share; `meta["realised_rate"]` gives the actual
    jobs per second."""
    if mean_rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be > 0")
    if not 0 <= swing < 1:
        raise ValueError("swing must be in [0, 1)")
    rng = random.Random(seed)
    burst_every_s = burst_every_s if burst_every_s is not None else duration_s / 4.0
    burst_len_s = burst_len_s if burst_len_s is not None else duration_s / 20.0
    bursts: list[tuple[float, float]] = []
    t = rng.expovariate(1.0 / burst_every_s)
    while t < duration_s:
        bursts.append((t, t + burst_len_s))
        t += burst_len_s + rng.expovariate(1.0 / burst_every_s)

    def rate(x: float) -> float:
        r = bursty_rate(x, mean_rate, duration_s, swing, periods)
        return r * burst_factor if any(a <= x < b for a, b in bursts) else r

    peak = mean_rate * (1.0 + swing) * max(1.0, burst_factor)
    t, jobs = 0.0, []
    while True:
        t += rng.expovariate(peak)
        if t > duration_s:
            break
        if rng.random() * peak <= rate(t):
            jobs.append(_job(rng, t, delta, best_accuracy, slack_ms, max_size))
    meta = {"generator": "bursty", "mean_rate": mean_rate, "duration_s": duration_s, "delta": delta,
            "best_accuracy": best_accuracy, "seed": seed, "slack_ms": slack_ms, "swing": swing, "periods": periods,
            "burst_every_s": burst_every_s, "burst_len_s": burst_len_s, "burst_factor": burst_factor,
            "bursts": [[round(a, 6), round(b, 6)] for a, b in bursts], "max_size": max_size,
            "realised_rate": len(jobs) / duration_s,
            "note": "stand-in for the paper's normalised Twitter trace (not available offline): "
                    "diurnal sine swing plus random bursts"}
    return Workload(jobs, meta)


def full_latency_ms(model, size: int) -> float:
    """Full-modality latency of a job of `size` requests in the consumer's cost model (its unit)."""
    cost = model.profiles.cost
    full = model.full_configuration
    return float(cost.latency({full: min(size, cost.max_batch)}))


def deadline_s(model, job: WorkloadJob, unit_s: float = 1e-3) -> float:
    """Absolute deadline (workload seconds) of `job` on `model`'s latency model."""
    return job.arrival_s + (full_latency_ms(model, job.size) + job.slack_ms) * unit_s


def to_sim_jobs(workload: Workload, model, unit_s: float = 1e-3, prefix: str = "j") -> list:
    """The simulator's SimJob list: deadlines from `model`'s full-modality latency + slack."""
    from mosel.sim.simulator import SimJob

    return [SimJob(arrival=j.arrival_s, size=j.size, min_accuracy=j.min_accuracy,
                   deadline=deadline_s(model, j, unit_s), id=f"{prefix}{k}")
            for k, j in enumerate(workload.jobs)]
