"""Run the profile store: versioned manifests, profiles, strategy matrices and tuning.

    python -m services.profile_store                       # SQLite under $MOSEL_HOME
    python -m services.profile_store --db /data/store.sqlite
    python -m services.profile_store --db postgresql://mosel@db-host:5432/mosel
"""

from __future__ import annotations

import logging
import sys

from mosel.server.flags import common_parser, setup_logging
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server
from mosel.store.db import default_store_path, open_store
from mosel.store.servicer import SERVICE_NAME, ProfileStoreServicer
from mosel.protocol.v1 import profile_store_pb2_grpc

log = logging.getLogger("services.profile_store")


def main(argv: list[str] | None = None) -> int:
    parser = common_parser("MOSEL profile store: versioned model manifests, latency/accuracy profiles, "
                           "strategy matrices and tuned thresholds.", default_port=50051, store_client=False)
    parser.add_argument("--db", default=None, metavar="PATH_OR_URL",
                        help="SQLite file or postgresql:// URL (default: profile_store.sqlite under $MOSEL_HOME)")
    parser.add_argument("--poll-ms", type=float, default=150.0,
                        help="how often Watch polls the database for writes by other store processes (default 150)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "profile_store")

    try:
        store = open_store(args.db if args.db else default_store_path())
    except Exception as exc:  # noqa: BLE001 - any failure to open is fatal and reported plainly
        log.error("cannot open the store database: %s", exc)
        return 2
    log.info("database %s (schema version %d)", store.describe(), store.schema_version())

    servicer = ProfileStoreServicer(store, poll_interval_s=args.poll_ms / 1000.0)
    running = start_server(
        [Registration(servicer, profile_store_pb2_grpc.add_ProfileStoreServiceServicer_to_server, SERVICE_NAME)],
        host=args.host, port=args.port, max_message_bytes=args.max_message_mb * 1024 * 1024,
    )
    running.on_drain.append(servicer.close)  # end Watch streams so the drain does not wait for them
    install_signal_handlers(running, args.grace_s)
    running.set_serving(True)
    log.info("serving %s on %s:%d", SERVICE_NAME, args.host, running.port)
    write_ready_file(args.ready_file, running.port)
    running.wait()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
