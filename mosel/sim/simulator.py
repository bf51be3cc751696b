"""Discrete-event simulator of one model's dispatcher, on a virtual clock.

It runs the same policy classes (mosel.scheduling.registry.POLICIES) and the same round
formation as mosel.engine.dispatcher, against a cost model instead of encoders:
- a job arrives: `policy.admit(job, queue, now)` (a raised MoselError = refused);
- whenever fewer than `pipeline_depth` rounds are in flight and the queue is not empty, a
  round is committed at time `now`: jobs whose deadline has passed are failed and never
  started ("expired"); `policy.plan` sets every queued item's configuration; jobs the
  policy lists in `policy.drops` are failed without starting ("dropped"); then jobs are
  taken in EDF order while the round holds at most `max_round_items` requests (never
  splitting a job, stopping at the first job that does not fit; a job larger than a round
  runs alone);
- the round puts one batch on each lane it uses (the lanes of mosel.scheduling.rounds:
  one per encoder for late fusion on separate devices, else one); a lane runs its batches
  one at a time, each taking `scale * profiled + batch_overhead_s` seconds; when all of a
  round's batches are done its finishing step (fusion head and answers, one round at a
  time) takes `scale * (profiled head + NOMINAL_ANSWER_S per request) + round_overhead_s`;
  every duration is multiplied by an optional noise factor exp(N(log(bias), noise)). All jobs of a round finish when it is
  answered ("served" when by their deadline, else "late"). Policies with the hooks get
  `round_started` / `lane_finished` / `round_finished` (and `job_expired` for a job whose
  deadline passed while queued) as the live dispatcher calls them.

`scale`, `batch_overhead_s` and `round_overhead_s` are what the live Predictor learns
(`LinearFit` per lane and for the finishing step): the ratio of live to profiled compute
and the fixed costs a compute profile cannot see (gRPC calls to the encoders,
(de)serialisation, Python dispatch). Defaults 1, 0 and 0 model profiled compute only;
mosel.bench.paper calibrates them against a live stack. With one lane and depth 1 a round
takes `scale * (round_latency + answers) + batch_overhead_s + round_overhead_s`, the paper's
strict round-after-round schedule.

Every job gets exactly one outcome. Jobs are mosel.scheduling.job.Job / Item objects whose
`model` is a `SimModel` exposing what policies use (name, configurations,
accuracy_of, profiles.cost, profiles.matrix).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Mapping, Sequence

from mosel.errors import MoselError
from mosel.scheduling.predict import Predictor
from mosel.scheduling.job import Item, Job

STATUSES = ("served", "late", "expired", "dropped", "refused")


class SimModel:
    """A served model as far as the policies are concerned."""

    def __init__(self, name: str, cost, matrix, accuracies: Mapping[str, float]):
        self.name = name
        self.configurations = sorted(cost.configurations, key=lambda c: -accuracies[c])
        self.full_configuration = max(cost.configurations, key=lambda c: len(c.split("+")))
        self._accuracy = dict(accuracies)
        self.profiles = SimpleNamespace(cost=cost, matrix=matrix, accuracy=self._accuracy)
        self.has_accuracy_profile = True

    def accuracy_of(self, configuration: str) -> float:
        return self._accuracy.get(configuration, 0.0)


def paper_model(max_batch: int = 32) -> SimModel:
    """The paper's TVLT stand-in (mosel.models.tvlt.paper_facts): joint cost model and its exact matrix."""
    from mosel.models.tvlt import paper_facts as paper
    from mosel.planning.solver import solve_matrix

    cost = paper.joint_cost()
    matrix = solve_matrix(cost, paper.ACCURACIES, max_batch=max_batch, step=paper.TARGET_STEP)
    return SimModel(paper.MODEL, cost, matrix, paper.ACCURACIES)


@dataclass
class SimJob:
    """Input: arrival and deadline in seconds of virtual time."""

    arrival: float
    size: int
    min_accuracy: float
    deadline: float
    candidates: Sequence[str] | None = None  # default: every configuration of the model
    id: str = ""


@dataclass
class Outcome:
    id: str
    arrival: float
    size: int
    deadline: float
    min_accuracy: float
    status: str = ""
    started: float | None = None
    finish: float | None = None
    configurations: list[str] = field(default_factory=list)
    accuracy: float | None = None

    @property
    def on_time(self) -> bool:
        return self.status == "served"

    @property
    def good(self) -> bool:
        return self.status == "served" and self.accuracy is not None and self.accuracy >= self.min_accuracy - 1e-9


@dataclass
class Summary:
    jobs: int
    requests: int
    counts: dict[str, int]
    duration_s: float
    throughput_rps: float  # requests finished (on time or late) per second
    goodput_rps: float  # requests finished by their deadline with the floor met, per second
    miss_rate: float  # jobs not finished by their deadline (late, expired, dropped, refused) / jobs
    mean_jct_ms: float
    p99_jct_ms: float
    mean_accuracy: float  # request-weighted, over finished requests
    floor_violations: int
    rounds: int


@dataclass
class SimResult:
    outcomes: list[Outcome]
    summary: Summary


def make_job(model: SimModel, spec: SimJob, index: int) -> Job:
    cands = list(spec.candidates) if spec.candidates else list(model.configurations)
    cands.sort(key=lambda c: -model.accuracy_of(c))
    items = [Item(id=f"{spec.id or index}-{k}", inputs={}, candidates=list(cands), index=k) for k in range(spec.size)]
    return Job(id=spec.id or str(index), model=model, items=items, received=spec.arrival, deadline=spec.deadline,
               min_accuracy=spec.min_accuracy)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


@dataclass(frozen=True)
class StepCost:
    """The true cost of a lane batch or a finishing step: `overhead_s + scale * profiled`
    seconds, times exp(N(0, noise)) (the form of a live service's measured LaneCost)."""

    overhead_s: float = 0.0
    scale: float = 1.0
    noise: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0.0):
            raise ValueError(f"overhead_s must be finite and >= 0, got {self.overhead_s}")
        if not (math.isfinite(self.scale) and self.scale > 0.0):
            raise ValueError(f"scale must be finite and > 0, got {self.scale}")
        if not (math.isfinite(self.noise) and self.noise >= 0.0):
            raise ValueError(f"noise must be finite and >= 0, got {self.noise}")


def simulate(specs: Sequence[SimJob], policy, model: SimModel, *, max_round_items: int = 32,
             unit_s: float = 1e-3, noise: float = 0.0, bias: float = 1.0, seed: int = 0,
             round_overhead_s: float = 0.0, scale: float = 1.0, batch_overhead_s: float = 0.0,
             pipeline_depth: int = 1, lane_costs: Sequence[StepCost] | None = None,
             finish_cost: StepCost | None = None, transit_s: float = 0.0) -> SimResult:
    """Run `specs` through `policy` (see the module doc). `lane_costs` (one per lane of the
    cost model) and `finish_cost` replace the uniform `scale` / `batch_overhead_s` /
    `round_overhead_s` / `noise`; `transit_s` is the client's share of a live job (the way
    to the service and back), half of it before the service sees the job, half after it
    answers: it counts in the JCT and against the deadline."""
    # the uniform costs, validated by StepCost whether or not they are overridden
    uniform_lane = StepCost(batch_overhead_s, scale, noise)
    uniform_finish = StepCost(round_overhead_s, scale, noise)
    if pipeline_depth < 1:
        raise ValueError(f"pipeline_depth must be >= 1, got {pipeline_depth}")
    if not (math.isfinite(transit_s) and transit_s >= 0.0):
        raise ValueError(f"transit_s must be finite and >= 0, got {transit_s}")
    policy.bind_pipeline_depth(pipeline_depth)
    way_in = way_out = transit_s / 2
    rng = random.Random(seed)
    order = sorted(range(len(specs)), key=lambda i: (specs[i].arrival, i))
    jobs = {i: make_job(model, specs[i], i) for i in order}
    out = {i: Outcome(jobs[i].id, specs[i].arrival, specs[i].size, specs[i].deadline, specs[i].min_accuracy)
           for i in order}
    index_of = {id(job): i for i, job in jobs.items()}
    cost = model.profiles.cost
    # The "true" costs: the same lanes and profiled work the predictor uses, scaled, with
    # fixed costs and noise on top (the predictor has to learn them).
    truth = Predictor(cost, max_round_items, unit_s=unit_s)
    n_lanes = len(truth.lanes)
    if lane_costs is None:
        lane_costs = [uniform_lane] * n_lanes
    elif len(lane_costs) != n_lanes:
        raise ValueError(f"lane_costs: {len(lane_costs)} given, the cost model has {n_lanes} lanes {truth.lanes}")
    if finish_cost is None:
        finish_cost = uniform_finish
    heap: list[tuple[tuple, int, Job]] = []
    events: list[tuple[float, int, str, object]] = []  # (time, tie-break, kind, payload)
    tie = itertools.count()
    lane_queue: list[deque] = [deque() for _ in range(n_lanes)]
    lane_busy = [False] * n_lanes
    finisher: deque = deque()
    finisher_busy = False
    in_flight = 0
    rounds = 0

    def take(step: StepCost, profiled_s: float) -> float:
        seconds = step.overhead_s + step.scale * profiled_s
        if step.noise > 0 or bias != 1.0:
            return seconds * math.exp(rng.gauss(math.log(bias), step.noise))
        return seconds

    def settle(job: Job, status: str, now: float | None = None) -> None:
        o = out[index_of[id(job)]]
        if o.status:
            raise RuntimeError(f"job {job.id} settled twice")
        o.status = status
        if status in ("served", "late"):
            o.started, o.finish = job.started, now
            o.configurations = [it.configuration for it in job.items]
            o.accuracy = sum(model.accuracy_of(c) for c in o.configurations) / job.size

    def queue() -> list[Job]:
        return [job for _, _, job in sorted(heap)]

    def run_lane(k: int, now: float) -> None:
        if lane_busy[k] or not lane_queue[k]:
            return
        rnd = lane_queue[k].popleft()
        lane_busy[k] = True
        seconds = take(lane_costs[k], rnd["work"][k])
        heapq.heappush(events, (now + seconds, next(tie), "lane", (k, rnd, seconds)))

    def run_finisher(now: float) -> None:
        nonlocal finisher_busy
        if finisher_busy or not finisher:
            return
        rnd = finisher.popleft()
        finisher_busy = True
        seconds = take(finish_cost, rnd["work"][-1])
        heapq.heappush(events, (now + seconds, next(tie), "finish", (rnd, seconds)))

    def start_round(now: float) -> bool:
        """Commit one round if the pipeline has room; whether one was committed."""
        nonlocal heap, in_flight, rounds
        if in_flight >= pipeline_depth:
            return False
        while heap and heap[0][2].deadline <= now:
            job = heapq.heappop(heap)[2]
            settle(job, "expired")
            policy.job_expired(job, now)
        if not heap:
            return False
        policy.plan(queue(), now)
        drops = {id(j) for j in policy.drops}
        if drops:
            kept = []
            for entry in heap:
                if id(entry[2]) in drops:
                    settle(entry[2], "dropped")
                else:
                    kept.append(entry)
            heap = kept
            heapq.heapify(heap)
        taken, items = [], 0
        while heap and (items + heap[0][2].size <= max_round_items or not taken):
            job = heapq.heappop(heap)[2]
            items += job.size
            taken.append(job)
            if items > max_round_items:
                break
        if not taken:
            return False
        for job in taken:
            job.started = now
        split = truth.split_of([it.configuration for job in taken for it in job.items])
        rnd = {"jobs": taken, "work": truth.lane_work(split), "ticket": policy.round_started(taken, now)}
        rnd["pending"] = {k for k in range(n_lanes) if rnd["work"][k] > 0}
        in_flight += 1
        rounds += 1
        for k in sorted(rnd["pending"]):
            lane_queue[k].append(rnd)
            run_lane(k, now)
        if not rnd["pending"]:  # nothing to encode (cannot happen with a valid cost model)
            finisher.append(rnd)
            run_finisher(now)
        return True

    def fill(now: float) -> None:
        while start_round(now):
            pass

    pos = 0
    now = 0.0
    while pos < len(order) or heap or in_flight:
        next_arrival = specs[order[pos]].arrival + way_in if pos < len(order) else math.inf
        if events and events[0][0] <= next_arrival:
            now, _, kind, payload = heapq.heappop(events)
            if kind == "lane":
                k, rnd, seconds = payload
                lane_busy[k] = False
                policy.lane_finished(rnd["ticket"], k, now, seconds)
                rnd["pending"].discard(k)
                if not rnd["pending"]:
                    finisher.append(rnd)
                    run_finisher(now)
                run_lane(k, now)
            else:
                rnd, seconds = payload
                finisher_busy = False
                for job in rnd["jobs"]:
                    received = now + way_out  # by the client
                    settle(job, "served" if received <= job.deadline else "late", received)
                in_flight -= 1
                policy.round_finished(rnd["ticket"], now, seconds)
                run_finisher(now)
                fill(now)
        elif pos < len(order):
            i = order[pos]
            pos += 1
            now = max(now, specs[i].arrival + way_in)
            job = jobs[i]
            try:
                policy.admit(job, queue(), now)
            except MoselError:
                settle(job, "refused")
            else:
                heapq.heappush(heap, (job.edf_key(), job.seq, job))
            fill(now)
        else:  # nothing in flight, no arrivals left, queue not empty (e.g. all expired)
            before = len(heap)
            fill(now)
            if not in_flight and len(heap) == before:
                raise RuntimeError("simulator made no progress")

    outcomes = [out[i] for i in order]
    return SimResult(outcomes, summarize(outcomes, rounds))


def summarize(outcomes: Sequence[Outcome], rounds: int = 0) -> Summary:
    counts = {s: 0 for s in STATUSES}
    for o in outcomes:
        counts[o.status] += 1
    finished = [o for o in outcomes if o.finish is not None]
    t0 = min((o.arrival for o in outcomes), default=0.0)
    t1 = max([o.arrival for o in outcomes] + [o.finish for o in finished], default=0.0)
    duration = max(t1 - t0, 1e-9)
    jct = [(o.finish - o.arrival) * 1000.0 for o in finished]
    done_req = sum(o.size for o in finished)
    acc = sum(o.accuracy * o.size for o in finished) / done_req if done_req else float("nan")
    return Summary(
        jobs=len(outcomes), requests=sum(o.size for o in outcomes), counts=counts, duration_s=duration,
        throughput_rps=done_req / duration, goodput_rps=sum(o.size for o in outcomes if o.good) / duration,
        miss_rate=sum(1 for o in outcomes if not o.on_time) / max(1, len(outcomes)),
        mean_jct_ms=statistics.fmean(jct) if jct else float("nan"), p99_jct_ms=_percentile(jct, 99),
        mean_accuracy=acc,
        floor_violations=sum(1 for o in finished if o.accuracy < o.min_accuracy - 1e-9), rounds=rounds)


def paper_workload(model: SimModel, rate_jobs_s: float, duration_s: float, *, seed: int = 0,
                   slack_ms: float = 17.0, max_size: int = 32, unit_s: float = 1e-3) -> list[SimJob]:
    """The paper's synthetic workload: Poisson arrivals, size max(1, int(Normal(1, 6))),
    floor uniform in [best - 0.03, best], deadline = arrival + full-modality latency of the
    job size + slack."""
    rng = random.Random(seed)
    cost = model.profiles.cost
    full = model.full_configuration
    best = model.accuracy_of(model.configurations[0])
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate_jobs_s)
        if t > duration_s:
            return out
        b = min(max_size, max(1, int(rng.gauss(1.0, 6.0))))
        floor = rng.uniform(best - 0.03, best)
        deadline = t + (cost.latency({full: b}) + slack_ms) * unit_s
        out.append(SimJob(arrival=t, size=b, min_accuracy=floor, deadline=deadline, id=f"j{len(out)}"))
