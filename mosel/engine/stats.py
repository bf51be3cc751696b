"""Serving statistics, updated by the dispatcher and read by GetStats."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


class ServingStats:
    def __init__(self, window: int = 20000):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests_received = 0
        self.requests_served = 0
        self.requests_degraded = 0
        self.deadline_misses = 0
        self.jobs_received = 0
        self.jobs_served = 0
        self.errors: Counter[str] = Counter()
        self.by_configuration: Counter[str] = Counter()
        self._accuracy_sum = 0.0
        self._latency_ms: deque[float] = deque(maxlen=window)  # recent served requests

    def received(self, requests: int) -> None:
        with self._lock:
            self.jobs_received += 1
            self.requests_received += requests

    def failed(self, code_name: str, requests: int) -> None:
        with self._lock:
            self.errors[code_name] += requests

    def served_job(self, configurations: list[str], accuracies: list[float], degraded: int,
                   latency_ms: float, late: bool) -> None:
        with self._lock:
            n = len(configurations)
            self.jobs_served += 1
            self.requests_served += n
            self.requests_degraded += degraded
            self.by_configuration.update(configurations)
            self._accuracy_sum += sum(accuracies)
            self._latency_ms.extend([latency_ms] * n)
            if late:
                self.deadline_misses += n

    def snapshot(self) -> dict:
        return ServingStats.combined([self])

    @staticmethod
    def combined(parts: list["ServingStats"]) -> dict:
        """One snapshot over several models' statistics (GetStats without a model filter)."""
        totals = {"requests_received": 0, "requests_served": 0, "requests_degraded": 0, "deadline_misses": 0,
                  "jobs_received": 0, "jobs_served": 0}
        errors: Counter[str] = Counter()
        configs: Counter[str] = Counter()
        accuracy_sum, latencies, started = 0.0, [], time.monotonic()
        for part in parts:
            with part._lock:
                for key in totals:
                    totals[key] += getattr(part, key)
                errors.update(part.errors)
                configs.update(part.by_configuration)
                accuracy_sum += part._accuracy_sum
                latencies.extend(part._latency_ms)
                started = min(started, part.started)
        lat = np.array(latencies) if latencies else np.zeros(1)
        served = totals["requests_served"]
        return {
            **totals,
            "errors": dict(errors),
            "served_by_configuration": dict(configs),
            "mean_expected_accuracy": accuracy_sum / served if served else 0.0,
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p99_ms": float(np.percentile(lat, 99)),
            "uptime_s": time.monotonic() - started,
        }
