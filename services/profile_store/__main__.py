"""Run the profile store: versioned manifests, profiles, strategy matrices and tuning.

    python -m services.profile_store                       # SQLite under $MOSEL_HOME
    python -m services.profile_store --db /data/store.sqlite
    python -m services.profile_store --db postgresql://mosel@db-host:5432/mosel
"""

from __future__ import annotations

import logging
import sys

from mosel.server.readiness import write_ready_file
from mosel.server.serve import DEFAULT_MAX_WORKERS, Registration, install_signal_handlers, start_server
from mosel.store.db import default_store_path, open_store
from mosel.store.servicer import SERVICE_NAME, ProfileStoreServicer
from mosel.store.settings import ProfileStoreSettings
from mosel.metrics.endpoint import serve_metrics
from mosel.metrics.families import ServiceMetrics
from mosel.metrics.interceptor import interceptors_for
from mosel.protocol.v1 import profile_store_pb2_grpc

log = logging.getLogger("services.profile_store")


def main(argv: list[str] | None = None) -> int:
    settings = ProfileStoreSettings.parse(argv)
    settings.setup_logging("profile_store")

    try:
        store = open_store(settings.db if settings.db else default_store_path())
    except Exception as exc:  # noqa: BLE001 - any failure to open is fatal and reported plainly
        log.error("cannot open the store database: %s", exc)
        return 2
    log.info("database %s (schema version %d)", store.describe(), store.schema_version())

    metrics = ServiceMetrics("profile_store") if settings.metrics_port >= 0 else None
    servicer = ProfileStoreServicer(store, poll_interval_s=settings.poll_ms / 1000.0,
                                    max_watch_streams=settings.max_watch_streams)
    running = start_server(
        [Registration(servicer, profile_store_pb2_grpc.add_ProfileStoreServiceServicer_to_server, SERVICE_NAME)],
        host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes,
        # Watch streams get threads of their own (capped in the servicer): idle watchers never
        # take the threads reads and health checks are served by.
        max_workers=DEFAULT_MAX_WORKERS + settings.max_watch_streams,
        interceptors=interceptors_for(metrics),
    )
    endpoint = serve_metrics(metrics, settings.host, settings.metrics_port)
    running.on_drain.append(servicer.close)  # end Watch streams so the drain does not wait for them
    install_signal_handlers(running, settings.grace_s)
    running.set_serving(True)
    log.info("serving %s on %s:%d", SERVICE_NAME, settings.host, running.port)
    write_ready_file(settings.ready_file, running.port)
    running.wait()
    if endpoint is not None:
        endpoint.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
