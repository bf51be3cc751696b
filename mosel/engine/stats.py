"""Serving statistics of one model, updated by the dispatcher and the servicer and read by
GetStats; with `metrics` given, the same events also feed the Prometheus families
(mosel.metrics.families.SelectionMetrics), so both views count alike."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mosel.metrics.families import SelectionMetrics


class ServingStats:
    def __init__(self, window: int = 20000, model: str = "", metrics: SelectionMetrics | None = None):
        self.model = model
        self.metrics = metrics
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.requests_received = 0
        self.requests_served = 0
        self.requests_degraded = 0
        self.requests_degraded_unavailable = 0
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

    def failed(self, code_name: str, requests: int, reason: str = "") -> None:
        """`requests` not served, with the status code they got; `reason` a short tag
        (e.g. queue_full, expired_in_queue), the code in lower case when not given."""
        with self._lock:
            self.errors[code_name] += requests
        if self.metrics is not None:
            self.metrics.refusals.labels(self.model, code_name, reason or code_name.lower()).inc(requests)

    def encoded(self, modality: str, batch: int, compute_s: float) -> None:
        """One encoder batch came back (`compute_s`: the encoder's own compute time)."""
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.model, modality).observe(batch)
            self.metrics.lane_seconds.labels(self.model, modality).observe(compute_s)

    def served_job(self, configurations: list[str], accuracies: list[float], degraded: int,
                   latency_ms: float, late: bool, queue_ms: float = 0.0, unavailable: int = 0) -> None:
        """`degraded` requests served with fewer modalities than they could use, `unavailable`
        of them because a modality had no encoder up."""
        if self.metrics is not None:
            self._observe_served(configurations, accuracies, degraded, latency_ms, late, queue_ms)
        with self._lock:
            n = len(configurations)
            self.jobs_served += 1
            self.requests_served += n
            self.requests_degraded += degraded
            self.requests_degraded_unavailable += unavailable
            self.by_configuration.update(configurations)
            self._accuracy_sum += sum(accuracies)
            self._latency_ms.extend([latency_ms] * n)
            if late:
                self.deadline_misses += n

    def _observe_served(self, configurations, accuracies, degraded, latency_ms, late, queue_ms) -> None:
        m, model, n = self.metrics, self.model, len(configurations)
        m.job_seconds.labels(model).observe(latency_ms / 1000.0)
        m.queue_seconds.labels(model).observe(queue_ms / 1000.0)
        for config, accuracy in zip(configurations, accuracies):
            m.requests_served.labels(model, config).inc()
            m.expected_accuracy.labels(model).observe(accuracy)
        if degraded:
            m.requests_degraded.labels(model).inc(degraded)
        if late:
            m.late.labels(model).inc(n)

    def snapshot(self) -> dict:
        return ServingStats.combined([self])

    @staticmethod
    def combined(parts: list["ServingStats"]) -> dict:
        """One snapshot over several models' statistics (GetStats without a model filter)."""
        totals = {"requests_received": 0, "requests_served": 0, "requests_degraded": 0, "deadline_misses": 0,
                  "jobs_received": 0, "jobs_served": 0, "requests_degraded_unavailable": 0}
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


def export_gauges(metrics: SelectionMetrics, model: str, queue_depth, headroom_s) -> None:
    """Read the queue depth and planning headroom of `model` at every scrape (callables)."""
    metrics.queue_depth.labels(model).set_function(queue_depth)
    metrics.headroom.labels(model).set_function(headroom_s)
