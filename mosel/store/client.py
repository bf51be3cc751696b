"""Typed client of the profile store service.

    with ProfileStoreClient("127.0.0.1:50051") as store:
        store.wait_ready(10)
        ref = store.register_model(manifest)
        profile = store.get_latency_profile("av-digits", variant="cuda-fp16")
        for event in store.watch(models=["av-digits"]):
            ...

Every call has a deadline: `timeout_s` given to the call, else the client's default.
Errors arrive as grpc.RpcError with the status codes of docs/architecture.md ("Errors").
"""

from __future__ import annotations

import time
from typing import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.server.channels import DEFAULT_MAX_MESSAGE_BYTES, make_channel
from mosel.store import db
from mosel.store.servicer import DB_TO_KIND, SERVICE_NAME, WATCH_SEQ_METADATA
from mosel.protocol.v1 import profile_store_pb2 as pb
from mosel.protocol.v1 import profile_store_pb2_grpc as pb_grpc


def record_kind(kind: int | str) -> int:
    """A RecordKind from its enum value, its enum name or its store name ('latency_profile')."""
    if isinstance(kind, str):
        if kind in DB_TO_KIND:
            return DB_TO_KIND[kind]
        try:
            return pb.RecordKind.Value(kind)
        except ValueError:
            raise ValueError(f"unknown record kind {kind!r}; expected one of {list(db.KINDS)}") from None
    return int(kind)


class WatchStream:
    """Iterator of VersionEvent; `cancel()` (or leaving a with-block) ends it cleanly.

    `after_seq` is the sequence number the server started after (None if the call
    failed before it started); every later write matching the filter will arrive."""

    def __init__(self, call, wait_started: bool = True):
        self._call = call
        self._cancelled = False
        self.after_seq: int | None = None
        if wait_started:
            self.wait_started()

    def wait_started(self) -> int | None:
        """Block until the server has established the watch (or the call ended)."""
        metadata = dict(self._call.initial_metadata() or ())
        if WATCH_SEQ_METADATA in metadata:
            self.after_seq = int(metadata[WATCH_SEQ_METADATA])
        return self.after_seq

    def __iter__(self) -> "WatchStream":
        return self

    def __next__(self) -> pb.VersionEvent:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "WatchStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class ProfileStoreClient:
    def __init__(self, address: str, timeout_s: float = 5.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.address = address
        self.timeout_s = timeout_s
        self._channel = make_channel(address, max_message_bytes)
        self._stub = pb_grpc.ProfileStoreServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def _timeout(self, timeout_s: float | None) -> float:
        return self.timeout_s if timeout_s is None else timeout_s

    # -- lifecycle ---------------------------------------------------------------------
    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the service reports SERVING; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"profile store at {self.address} not SERVING after {timeout_s:.1f}s ({last})")
            try:
                reply = self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                           timeout=min(1.0, remaining), wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ProfileStoreClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- manifests ---------------------------------------------------------------------
    def register_model(self, manifest: pb.ModelManifest, timeout_s: float | None = None) -> pb.VersionRef:
        return self._stub.RegisterModel(manifest, timeout=self._timeout(timeout_s))

    def get_model(self, name: str, version: int = 0, timeout_s: float | None = None) -> pb.ModelManifest:
        return self._stub.GetModel(pb.GetRequest(model=name, version=version), timeout=self._timeout(timeout_s))

    def list_models(self, timeout_s: float | None = None) -> list[pb.ModelManifest]:
        return list(self._stub.ListModels(pb.ListModelsRequest(), timeout=self._timeout(timeout_s)).models)

    # -- profiles, matrices, tuning ----------------------------------------------------
    def put_latency_profile(self, profile: pb.LatencyProfile, timeout_s: float | None = None) -> pb.VersionRef:
        return self._stub.PutLatencyProfile(profile, timeout=self._timeout(timeout_s))

    def get_latency_profile(self, model: str, version: int = 0, variant: str = "",
                            timeout_s: float | None = None) -> pb.LatencyProfile:
        return self._stub.GetLatencyProfile(pb.GetRequest(model=model, version=version, variant=variant),
                                            timeout=self._timeout(timeout_s))

    def put_accuracy_profile(self, profile: pb.AccuracyProfile, timeout_s: float | None = None) -> pb.VersionRef:
        return self._stub.PutAccuracyProfile(profile, timeout=self._timeout(timeout_s))

    def get_accuracy_profile(self, model: str, version: int = 0, variant: str = "",
                             timeout_s: float | None = None) -> pb.AccuracyProfile:
        return self._stub.GetAccuracyProfile(pb.GetRequest(model=model, version=version, variant=variant),
                                             timeout=self._timeout(timeout_s))

    def put_strategy_matrix(self, matrix: pb.StrategyMatrix, timeout_s: float | None = None) -> pb.VersionRef:
        return self._stub.PutStrategyMatrix(matrix, timeout=self._timeout(timeout_s))

    def get_strategy_matrix(self, model: str, version: int = 0, variant: str = "",
                            timeout_s: float | None = None) -> pb.StrategyMatrix:
        return self._stub.GetStrategyMatrix(pb.GetRequest(model=model, version=version, variant=variant),
                                            timeout=self._timeout(timeout_s))

    def put_tuning(self, record: pb.TuningRecord, timeout_s: float | None = None) -> pb.VersionRef:
        return self._stub.PutTuning(record, timeout=self._timeout(timeout_s))

    def get_tuning(self, model: str, version: int = 0, timeout_s: float | None = None) -> pb.TuningRecord:
        return self._stub.GetTuning(pb.GetRequest(model=model, version=version), timeout=self._timeout(timeout_s))

    # -- versions and events -----------------------------------------------------------
    def list_versions(self, model: str, kind: int | str, timeout_s: float | None = None) -> list[pb.VersionRef]:
        request = pb.ListVersionsRequest(model=model, kind=record_kind(kind))
        return list(self._stub.ListVersions(request, timeout=self._timeout(timeout_s)).versions)

    def watch(self, models: Iterable[str] = (), kinds: Iterable[int | str] = (), after_seq: int = 0,
              timeout_s: float | None = None, wait_started: bool = True) -> WatchStream:
        """Stream of VersionEvent for new versions (after `after_seq` to resume).

        With `wait_started` (default) this returns once the server has established the
        watch, so a write made afterwards is never missed. No deadline unless
        `timeout_s` is given: a watch runs until cancelled."""
        request = pb.WatchRequest(models=list(models), kinds=[record_kind(k) for k in kinds], after_seq=after_seq)
        return WatchStream(self._stub.Watch(request, timeout=timeout_s), wait_started=wait_started)
