"""Drive a running selection service with jobs over real gRPC and summarise the outcome."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from tqdm import tqdm

from mosel.client import MoselClient, job_request


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
