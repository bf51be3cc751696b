"""A KServe v2 / Triton gateway in front of a running selection service.

    python -m mosel.frontends --selection 127.0.0.1:50050 --port 8001 --http-port 8000

serves inference.GRPCInferenceService on --port and the REST API on --http-port, both
forwarding each call as one job to the selection service's mosel.v1 InferJob. (Inside the
selection service itself the same fronts run in-process; this process is for deployments
that want the protocol on another host or port, and for tests.)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from mosel.frontends.backend import StubBackend
from mosel.frontends.kserve_grpc import SERVICE_NAME, KServeServicer, add_to_server
from mosel.frontends.kserve_http import start_http
from mosel.server.channels import DEFAULT_MAX_MESSAGE_BYTES
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server

log = logging.getLogger("mosel.frontends")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--selection", required=True, metavar="HOST:PORT", help="selection service to forward to")
    p.add_argument("--host", default="127.0.0.1", help="address to bind, both fronts (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8001, help="gRPC port, 0 = any free (default 8001, as Triton)")
    p.add_argument("--http-port", type=int, default=8000,
                   help="HTTP/REST port, 0 = any free, -1 = no HTTP front (default 8000, as Triton)")
    p.add_argument("--model", action="append", default=[],
                   help="model to list in statistics (repeatable; default: the models seen so far)")
    p.add_argument("--ready-file", default=None, help="write the gRPC port here once serving")
    p.add_argument("--http-ready-file", default=None, help="write the HTTP port here once serving")
    p.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the selection service")
    p.add_argument("--grace-s", type=float, default=30.0, help="on SIGTERM, seconds for calls in flight")
    p.add_argument("--max-message-mb", type=int, default=DEFAULT_MAX_MESSAGE_BYTES // (1024 * 1024),
                   help="gRPC message size limit, both directions (default 64)")
    p.add_argument("--max-inflight", type=int, default=256, help="gRPC calls in flight at once (default 256)")
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s kserve %(name)s: %(message)s")
    max_bytes = args.max_message_mb * 1024 * 1024
    backend = StubBackend.connect(args.selection, models=args.model, max_message_bytes=max_bytes)
    deadline = time.monotonic() + args.wait_s
    while not backend.ready():
        if time.monotonic() > deadline:
            log.error("selection service at %s not serving after %.0fs", args.selection, args.wait_s)
            backend.close()
            return 2
        time.sleep(0.2)
    kserve = KServeServicer(backend)
    running = start_server([Registration(kserve, add_to_server, SERVICE_NAME)], host=args.host, port=args.port,
                           max_message_bytes=max_bytes, max_workers=args.max_inflight,
                           max_concurrent_rpcs=args.max_inflight)
    http = None
    if args.http_port >= 0:
        http = start_http(kserve.core, host=args.host, port=args.http_port, max_body_bytes=max_bytes)
    running.on_drain.append(lambda: kserve.set_ready(False))
    install_signal_handlers(running, args.grace_s)
    running.set_serving(True)
    log.info("KServe v2 gateway for %s: gRPC on %s:%d%s", args.selection, args.host, running.port,
             f", HTTP on {http.url}" if http else "")
    if http is not None:
        write_ready_file(args.http_ready_file, http.port)
    write_ready_file(args.ready_file, running.port)  # last: supervisors wait for this one
    running.wait()
    if http is not None:
        http.stop(args.grace_s)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
