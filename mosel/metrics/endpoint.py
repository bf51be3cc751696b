"""The HTTP endpoint Prometheus scrapes (`/metrics`), one per service process."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import start_http_server

from mosel.metrics.families import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    host: str
    port: int
    _server: object
    _thread: object

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_metrics_endpoint(metrics: ServiceMetrics, host: str = "127.0.0.1", port: int = 0) -> MetricsEndpoint:
    """Serve `metrics.registry` at http://host:port/metrics (port 0: any free port)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    bound = server.server_address[1]
    log.info("metrics at http://%s:%d/metrics", host, bound)
    return MetricsEndpoint(host, bound, server, thread)


def serve_metrics(metrics: ServiceMetrics | None, host: str, port: int) -> MetricsEndpoint | None:
    """A service's endpoint when its metrics are on (`port` >= 0), else None."""
    return start_metrics_endpoint(metrics, host, port) if metrics is not None and port >= 0 else None
