"""The metric families each service exports, on a registry of its own (so tests and several
services in one process never share counters).

Every family's name starts with `mosel_`; times are in seconds, as Prometheus expects.
Histograms (not summaries), so percentiles can be aggregated across replicas.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From 1 ms (a cheap encoder batch) to a minute (a TVLT-sized job on a CPU).
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ACCURACY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)


class ServiceMetrics:
    """What every service counts: its gRPC calls (see mosel.metrics.interceptor)."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        self.rpc_requests = Counter("mosel_rpc_requests", "gRPC calls finished, by method and status code",
                                    ["service", "method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram("mosel_rpc_duration_seconds", "Server-side time of a gRPC call, by method",
                                     ["service", "method"], buckets=SECONDS_BUCKETS, registry=self.registry)
        self.rpc_in_flight = Gauge("mosel_rpc_in_flight", "gRPC calls being handled now",
                                   ["service"], registry=self.registry)


class SelectionMetrics(ServiceMetrics):
    """The selection service: jobs, their choices and the scheduler's state, by model."""

    def __init__(self, service: str = "selection"):
        super().__init__(service)
        r = self.registry
        self.job_seconds = Histogram("mosel_job_duration_seconds",
                                     "Time from admission to answer of a served job (server side)",
                                     ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self.queue_seconds = Histogram("mosel_job_queue_seconds", "Time a served job waited before its round started",
                                       ["model"], buckets=SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram("mosel_encoder_batch_size", "Requests per encoder batch the dispatcher sent",
                                    ["model", "modality"], buckets=BATCH_BUCKETS, registry=r)
        self.lane_seconds = Histogram("mosel_encoder_lane_seconds",
                                      "Encoder compute of one batch as the encoder reported it, per modality",
                                      ["model", "modality"], buckets=SECONDS_BUCKETS, registry=r)
        self.expected_accuracy = Histogram("mosel_expected_accuracy",
                                           "Expected accuracy of each served request's configuration",
                                           ["model"], buckets=ACCURACY_BUCKETS, registry=r)
        self.requests_served = Counter("mosel_requests_served", "Requests answered with a prediction, by configuration",
                                       ["model", "configuration"], registry=r)
        self.requests_degraded = Counter("mosel_requests_degraded",
                                         "Served requests that ran with fewer modalities than they provided",
                                         ["model"], registry=r)
        self.refusals = Counter("mosel_requests_refused", "Requests not served, by status code and reason",
                                ["model", "code", "reason"], registry=r)
        self.late = Counter("mosel_deadline_missed_after_completion",
                            "Served requests whose answer was ready only after their deadline", ["model"], registry=r)
        self.queue_depth = Gauge("mosel_queue_depth", "Requests queued, not yet started", ["model"], registry=r)
        self.headroom = Gauge("mosel_planning_headroom_seconds",
                              "Time the mosel policy keeps in hand for misses (0 for other policies)",
                              ["model"], registry=r)


class EncoderMetrics(ServiceMetrics):
    """An encoder service: its batches, by model and modality."""

    def __init__(self, service: str = "encoder"):
        super().__init__(service)
        r = self.registry
        self.compute_seconds = Histogram("mosel_encoder_compute_seconds", "Compute time of one encoder batch",
                                         ["model", "modality"], buckets=SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram("mosel_encoder_batch_size", "Items per encoder batch received",
                                    ["model", "modality"], buckets=BATCH_BUCKETS, registry=r)
