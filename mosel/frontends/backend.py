"""The selection service behind a front: in-process or over gRPC, one interface.

`as_backend(target)` takes
- a `SelectionServicer` (any mosel.v1 SelectionServiceServicer) of this process: calls go
  straight to its methods with a local call context, no network hop;
- a mosel.v1 `SelectionServiceStub` (or anything with its method names: InferJob,
  GetModelMetadata, GetStats): calls go over that stub's channel;
- a `Backend` already made.

Either way a refusal comes back as `Refused`, a MoselError carrying the selection service's
own status code and message, so a front answers with exactly the codes mosel.v1 uses.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.errors import MoselError
from mosel.protocol.v1 import selection_pb2, selection_pb2_grpc

SELECTION_SERVICE = "mosel.v1.SelectionService"
# Wait for an answer this long past the job's own deadline before giving up on the backend.
CALL_GRACE_S = 10.0
# Calls with no deadline at all (no timeout parameter, no client deadline) wait at most this.
UNBOUNDED_CALL_S = 600.0


class Refused(MoselError):
    """The selection service refused or failed a call; `code` is its gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(details)
        self.code, self.details = code, details


class LocalContext:
    """The part of grpc.ServicerContext the selection servicer uses, for in-process calls."""

    def __init__(self, timeout_s: float | None):
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self):
        return ()

    def peer(self) -> str:
        return "in-process"

    def abort(self, code: grpc.StatusCode, details: str):
        raise _Aborted(code, details)

    def set_code(self, code) -> None:  # pragma: no cover - the servicer raises instead
        pass

    def set_details(self, details) -> None:  # pragma: no cover
        pass


class Backend:
    """What the fronts call. Subclasses implement `_call`, `ready` and `models`."""

    def infer_job(self, request: selection_pb2.InferJobRequest, timeout_s: float | None) -> selection_pb2.InferJobResponse:
        return self._call("InferJob", request, timeout_s)

    def metadata(self, model: str, timeout_s: float | None = 10.0) -> selection_pb2.ModelMetadata:
        return self._call("GetModelMetadata", selection_pb2.ModelMetadataRequest(model=model), timeout_s)

    def stats(self, model: str = "", timeout_s: float | None = 10.0) -> selection_pb2.Stats:
        return self._call("GetStats", selection_pb2.StatsRequest(model=model), timeout_s)

    def ready(self) -> bool:
        raise NotImplementedError

    def models(self) -> list[str]:
        """Served model names, where the backend can tell (else those configured or seen)."""
        raise NotImplementedError

    def _call(self, method: str, request, timeout_s: float | None):
        raise NotImplementedError

    def close(self) -> None:
        pass


class InProcessBackend(Backend):
    def __init__(self, servicer, ready: Callable[[], bool] | None = None):
        self.servicer = servicer
        self._ready = ready

    def _call(self, method: str, request, timeout_s: float | None):
        try:
            return getattr(self.servicer, method)(request, LocalContext(timeout_s))
        except _Aborted as exc:
            raise Refused(exc.code, exc.details) from None

    def models(self) -> list[str]:
        return sorted(getattr(self.servicer, "dispatchers", {}) or {})

    def ready(self) -> bool:
        return self._ready() if self._ready is not None else bool(self.models())


class StubBackend(Backend):
    """A mosel.v1 stub (remote selection service). `models`: names to list in statistics;
    without them, the models seen so far are listed."""

    def __init__(self, stub, channel: grpc.Channel | None = None, models: Iterable[str] = ()):
        self.stub = stub
        self.channel = channel
        self._models = list(models)
        self._seen: set[str] = set()
        self._health = health_pb2_grpc.HealthStub(channel) if channel is not None else None

    @classmethod
    def connect(cls, address: str, models: Iterable[str] = (), max_message_bytes: int | None = None) -> "StubBackend":
        from mosel.server.channels import make_channel

        channel = make_channel(address) if max_message_bytes is None else make_channel(address, max_message_bytes)
        return cls(selection_pb2_grpc.SelectionServiceStub(channel), channel, models)

    def _call(self, method: str, request, timeout_s: float | None):
        try:
            timeout = UNBOUNDED_CALL_S if timeout_s is None else min(timeout_s, UNBOUNDED_CALL_S)
            response = getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNAVAILABLE
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise Refused(code, details or code.name) from None
        if method == "GetModelMetadata":
            self._seen.add(response.name)
        return response

    def models(self) -> list[str]:
        return sorted(set(self._models) | self._seen)

    def ready(self) -> bool:
        if self._health is None:
            try:
                self.stats(timeout_s=2.0)
                return True
            except Refused:
                return False
        try:
            status = self._health.Check(health_pb2.HealthCheckRequest(service=SELECTION_SERVICE), timeout=2.0).status
        except grpc.RpcError:
            return False
        return status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()


def as_backend(target, ready: Callable[[], bool] | None = None) -> Backend:
    if isinstance(target, Backend):
        return target
    if isinstance(target, selection_pb2_grpc.SelectionServiceServicer):
        return InProcessBackend(target, ready)
    if all(hasattr(target, m) for m in ("InferJob", "GetModelMetadata", "GetStats")):
        if isinstance(target, selection_pb2_grpc.SelectionServiceStub) or callable(getattr(target.InferJob, "future", None)):
            return StubBackend(target)
        return InProcessBackend(target, ready)  # duck-typed servicer
    raise TypeError(f"cannot serve through {type(target).__name__}: expected a SelectionServicer, "
                    f"a mosel.v1 SelectionServiceStub or a Backend")
