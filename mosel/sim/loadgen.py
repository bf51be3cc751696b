"""Drive a running selection service with jobs over real gRPC and summarise the outcome."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from tqdm import tqdm

from mosel.client import MoselClient, job_request

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def paper_job_sizes(n_jobs: int, rng: np.random.Generator, max_size: int = 32) -> list[int]:
    """Job sizes as in the paper's workloads: max(1, int(Normal(1, 6))), capped at max_size."""
    return [min(max_size, max(1, int(rng.normal(1.0, 6.0)))) for _ in range(n_jobs)]


@dataclass
class LoadResult:
    wall_s: float = 0.0
    jobs_sent: int = 0
    requests_sent: int = 0
    requests_served: int = 0
    correct: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # per served job, client side
    errors: Counter = field(default_factory=Counter)  # status code name -> requests
    configurations: Counter = field(default_factory=Counter)
    expected_accuracy_sum: float = 0.0
    degraded: int = 0

    @property
    def throughput_rps(self) -> float:
        return self.requests_served / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def accuracy(self) -> float:
        return self.correct / self.requests_served if self.requests_served else float("nan")

    @property
    def mean_expected_accuracy(self) -> float:
        return self.expected_accuracy_sum / self.requests_served if self.requests_served else float("nan")


def run_closed_loop(client: MoselClient, model: str, samples: list, job_sizes: list[int], concurrency: int = 8,
                    budget_ms: float = 1000.0, min_accuracy: float = 0.0, progress: bool = True,
                    desc: str = "requests") -> LoadResult:
    """`concurrency` clients each send their next job as soon as the previous one answered.

    `samples` is a list of (inputs dict, true label); jobs draw them round robin."""
    requests, labels, cursor = [], [], 0
    for j, size in enumerate(job_sizes):
        picked = [samples[(cursor + i) % len(samples)] for i in range(size)]
        cursor += size
        requests.append(job_request(model, [s[0] for s in picked], job_id=f"job-{j}",
                                    budget_ms=budget_ms, min_accuracy=min_accuracy))
        labels.append([s[1] for s in picked])
    result = LoadResult(jobs_sent=len(requests), requests_sent=sum(job_sizes))
    lock = threading.Lock()
    bar = tqdm(total=result.requests_sent, desc=desc, unit="req", disable=not progress, leave=False)

    def one(j: int) -> None:
        t0 = time.perf_counter()
        try:
            response = client.stub.InferJob(requests[j], timeout=budget_ms / 1000.0 + 5.0)
        except grpc.RpcError as exc:
            with lock:
                result.errors[exc.code().name] += job_sizes[j]
            bar.update(job_sizes[j])
            return
        elapsed = (time.perf_counter() - t0) * 1000.0
        with lock:
            result.latencies_ms.append(elapsed)
            result.requests_served += len(response.results)
            for r, truth in zip(response.results, labels[j]):
                result.correct += int(r.label == truth)
                result.configurations[r.configuration] += 1
                result.expected_accuracy_sum += r.expected_accuracy
                result.degraded += int(r.degraded)
        bar.update(job_sizes[j])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(len(requests))))
    result.wall_s = time.perf_counter() - start
    bar.close()
    return result


# ----------------------------------------------------------------------------- open loop


@dataclass
class JobRecord:
    """One job of an open-loop run (times in seconds from the run's start, client clock)."""

    index: int
    job_id: str
    size: int
    min_accuracy: float
    budget_ms: float
    scheduled_s: float  # arrival time from the workload
    sent_s: float = float("nan")  # when the call was actually issued
    done_s: float = float("nan")  # when the answer (or error) arrived
    code: str = ""  # "OK" or the gRPC status code name
    served: int = 0  # requests answered
    correct: int = 0  # answered requests whose label matched the truth
    configurations: list[str] = field(default_factory=list)
    expected_accuracy: float = float("nan")  # job's size-weighted expected accuracy (server's)
    degraded: bool = False
    server_ms: float = float("nan")  # the service's own time for the job (receipt to answer)
    detail: str = ""  # the error's message, when code is not "OK"

    @property
    def latency_ms(self) -> float:
        return (self.done_s - self.scheduled_s) * 1000.0

    @property
    def send_lag_ms(self) -> float:
        return (self.sent_s - self.scheduled_s) * 1000.0

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def on_time(self) -> bool:
        """Answered within its budget (client side, from its scheduled arrival)."""
        return self.ok and self.latency_ms <= self.budget_ms

    @property
    def floor_met(self) -> bool:
        return self.ok and self.expected_accuracy >= self.min_accuracy - 1e-9

    def to_dict(self) -> dict:
        return {"index": self.index, "job_id": self.job_id, "size": self.size, "min_accuracy": self.min_accuracy,
                "budget_ms": self.budget_ms, "scheduled_s": self.scheduled_s, "sent_s": self.sent_s,
                "done_s": self.done_s, "code": self.code, "served": self.served, "correct": self.correct,
                "configurations": list(self.configurations), "expected_accuracy": self.expected_accuracy,
                "degraded": self.degraded, "server_ms": self.server_ms, "detail": self.detail}


@dataclass
class OpenLoopResult:
    jobs: list[JobRecord]
    wall_s: float
    duration_s: float  # the workload's span (last scheduled arrival, or its meta duration)

    @property
    def jobs_sent(self) -> int:
        return len(self.jobs)

    @property
    def requests_sent(self) -> int:
        return sum(j.size for j in self.jobs)

    @property
    def requests_served(self) -> int:
        return sum(j.served for j in self.jobs)

    def summary(self) -> dict:
        """Counts and rates; 'miss' = not answered OK within the budget (errors included)."""
        jobs = self.jobs
        ok = [j for j in jobs if j.ok]
        on_time = [j for j in jobs if j.on_time]
        good = [j for j in on_time if j.floor_met]
        lat = sorted(j.latency_ms for j in ok)
        lags = sorted(j.send_lag_ms for j in jobs if j.sent_s == j.sent_s)
        served_req = sum(j.served for j in ok)
        codes = Counter(j.code for j in jobs)
        # why jobs failed, numbers masked so one cause counts once ("… is N ms in the past")
        reasons = Counter(_NUMBER.sub("N", j.detail) for j in jobs if not j.ok)
        configs = Counter(c for j in ok for c in j.configurations)
        span = max(self.wall_s, 1e-9)
        return {
            "jobs": len(jobs), "requests": self.requests_sent, "served_jobs": len(ok),
            "served_requests": served_req, "on_time_jobs": len(on_time),
            "good_requests": sum(j.served for j in good),
            "miss_rate": 1.0 - len(on_time) / max(1, len(jobs)),
            "codes": dict(codes), "error_reasons": dict(reasons.most_common()), "configurations": dict(configs),
            "late_jobs": len(ok) - len(on_time),
            "degraded_jobs": sum(1 for j in ok if j.degraded),
            "floor_violations": sum(1 for j in ok if not j.floor_met),
            "mean_jct_ms": float(np.mean(lat)) if lat else float("nan"),
            "p99_jct_ms": float(np.percentile(lat, 99)) if lat else float("nan"),
            "throughput_rps": served_req / span, "goodput_rps": sum(j.served for j in good) / span,
            "expected_accuracy": (sum(j.expected_accuracy * j.served for j in ok) / served_req
                                  if served_req else float("nan")),
            "measured_accuracy": sum(j.correct for j in ok) / served_req if served_req else float("nan"),
            "max_send_lag_ms": lags[-1] if lags else float("nan"),
            "p99_send_lag_ms": float(np.percentile(lags, 99)) if lags else float("nan"),
            "wall_s": self.wall_s,
        }


def run_open_loop(stub, model: str, samples: list, workload, budget_ms_of, *, grace_s: float = 5.0,
                  progress: bool = False, desc: str = "jobs", drain_timeout_s: float = 120.0,
                  job_prefix: str = "job", absolute_deadlines: bool = True) -> OpenLoopResult:
    """Send each job of `workload` (mosel.sim.workload.Workload) at its scheduled arrival time,
    however slow the server is: calls are issued with `stub.InferJob.future` (many in flight)
    from one pacing thread that sleeps until each arrival; answers are recorded by callbacks.

    `stub`: a SelectionService stub (e.g. MoselClient(...).stub). `samples`: list of
    (inputs dict, true label), drawn round robin. `budget_ms_of(job)`: the job's deadline budget
    in ms (e.g. full-modality latency of its size + its slack); the gRPC timeout is budget +
    `grace_s`. Requests are built before the clock starts, so encoding does not delay sends.
    Latency is measured client side from the scheduled arrival (so a late send counts); with
    `absolute_deadlines` the server is told the same deadline (SLO.deadline_unix_ms)."""
    requests, labels, records = [], [], []
    cursor = 0
    for k, wj in enumerate(workload.jobs):
        picked = [samples[(cursor + i) % len(samples)] for i in range(wj.size)]
        cursor += wj.size
        budget = float(budget_ms_of(wj))
        job_id = f"{job_prefix}-{k}"
        requests.append(job_request(model, [s[0] for s in picked], job_id=job_id, budget_ms=budget,
                                    min_accuracy=wj.min_accuracy))
        labels.append([s[1] for s in picked])
        records.append(JobRecord(k, job_id, wj.size, wj.min_accuracy, budget, wj.arrival_s))
    lock = threading.Lock()
    pending = [len(records)]
    all_done = threading.Event()
    if not records:
        all_done.set()
    bar = tqdm(total=len(records), desc=desc, unit="job", disable=not progress, leave=False)
    t0 = 0.0

    def finish(k: int, fut) -> None:
        now = time.perf_counter() - t0
        rec = records[k]
        try:
            response = fut.result()
        except grpc.RpcError as exc:
            code = exc.code()
            rec.code = code.name if code is not None else "UNKNOWN"
            rec.detail = exc.details() or ""
        except Exception as exc:  # cancelled futures and the like
            rec.code = type(exc).__name__
            rec.detail = str(exc)
        else:
            rec.code = "OK"
            rec.served = len(response.results)
            rec.correct = sum(int(r.label == t) for r, t in zip(response.results, labels[k]))
            rec.configurations = [r.configuration for r in response.results]
            rec.expected_accuracy = (response.expected_accuracy if response.results and response.expected_accuracy
                                     else (sum(r.expected_accuracy for r in response.results) / len(response.results)
                                           if response.results else float("nan")))
            rec.degraded = bool(response.degraded)
            rec.server_ms = response.timing.total_us / 1000.0
        rec.done_s = now
        with lock:
            bar.update(1)
            pending[0] -= 1
            if pending[0] == 0:
                all_done.set()

    futures = []
    t0 = time.perf_counter()
    wall_t0_ms = time.time() * 1000.0
    for k, rec in enumerate(records):
        wait = rec.scheduled_s - (time.perf_counter() - t0)
        if wait > 0:
            time.sleep(wait)
        rec.sent_s = time.perf_counter() - t0
        if absolute_deadlines:
            # The job's deadline counts from its scheduled arrival, as the client measures it,
            # so a late send does not hand the server a fresh budget.
            requests[k].slo.deadline_unix_ms = int(wall_t0_ms + (rec.scheduled_s * 1000.0 + rec.budget_ms))
        fut = stub.InferJob.future(requests[k], timeout=rec.budget_ms / 1000.0 + grace_s)
        fut.add_done_callback(lambda f, k=k: finish(k, f))
        futures.append(fut)
    if not all_done.wait(drain_timeout_s):
        for fut in futures:
            fut.cancel()
        all_done.wait(5.0)
    wall = time.perf_counter() - t0
    bar.close()
    duration = float(getattr(workload, "duration_s", 0.0) or (records[-1].scheduled_s if records else 0.0))
    return OpenLoopResult(records, wall, duration)
