"""One way to run a gRPC service: health, reflection, size limits, graceful drain.

Every service in services/ builds its servicers and hands them to `serve()`, which
binds (127.0.0.1 unless told otherwise), registers grpc.health.v1 and reflection,
marks itself SERVING once ready, and on SIGTERM/SIGINT flips health to NOT_SERVING,
stops accepting calls and waits for in-flight calls to finish (the drain).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mosel.server.channels import DEFAULT_MAX_MESSAGE_BYTES, channel_options
from mosel.server.parent_watch import watch_parent

log = logging.getLogger(__name__)

# Handler threads of a server: each call in progress (a stream: for its whole life) holds one.
DEFAULT_MAX_WORKERS = 32

@dataclass
class Registration:
    """A servicer to add: `add(servicer, server)` is the generated add_*_to_server."""

    servicer: object
    add: Callable[[object, grpc.Server], None]
    service_name: str  # full name, e.g. "mosel.v1.EncoderService"


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: list[str]
    on_drain: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.service_names]:
            self.health.set(name, status)

    def drain(self, grace_s: float) -> None:
        """Refuse new calls, let in-flight ones finish (up to grace_s), then stop."""
        if self._stopped.is_set():
            return
        log.info("draining (grace %.1fs)", grace_s)
        self.set_serving(False)
        for hook in self.on_drain:
            hook()
        self.server.stop(grace_s).wait()
        self._stopped.set()
        log.info("stopped")

    def wait(self) -> None:
        # Wake up now and then: a signal the kernel hands to one of gRPC's threads only sets
        # a flag, and Python runs the handler when the main thread next runs bytecode.
        while not self._stopped.wait(0.25):
            pass


def start_server(
    registrations: list[Registration],
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = DEFAULT_MAX_WORKERS,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_concurrent_rpcs: int | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> RunningServer:
    """Start serving; health stays NOT_SERVING until the caller says it is ready.

    `max_concurrent_rpcs`: calls beyond it are refused at once with RESOURCE_EXHAUSTED
    instead of waiting, unseen, for a free handler thread."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=channel_options(max_message_bytes),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        interceptors=list(interceptors),
    )
    names = [r.service_name for r in registrations]
    for r in registrations:
        r.add(r.servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    server.start()
    running = RunningServer(server=server, port=bound, health=health_servicer, service_names=names)
    running.set_serving(False)
    return running


def install_signal_handlers(running: RunningServer, grace_s: float) -> None:
    """SIGTERM/SIGINT drain the server from a helper thread (handlers must return fast).
    Also starts the parent watch (mosel.server.parent_watch): when the process that
    launched this one dies, it sends SIGTERM, so the service drains the same way."""
    signalled = threading.Event()  # a drain has begun: the parent watch need not start one

    def handler(signum, _frame):
        signalled.set()
        log.info("received %s", signal.Signals(signum).name)
        threading.Thread(target=running.drain, args=(grace_s,), daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    watch_parent(stop=signalled)
