"""Python client of the selection service (other languages: generate stubs from protos/)."""

from __future__ import annotations

import time
from typing import Iterable, Iterator, Mapping, Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.protocol import tensors as wire
from mosel.server.channels import make_channel
from mosel.protocol.v1 import selection_pb2, selection_pb2_grpc


def make_slo(budget_ms: float | None = None, deadline_unix_ms: int | None = None, min_accuracy: float = 0.0,
             allowed: Sequence[str] = (), required: Sequence[str] = (), priority: int = 0) -> selection_pb2.SLO:
    slo = selection_pb2.SLO(min_accuracy=min_accuracy, allowed_modalities=list(allowed),
                            required_modalities=list(required), priority=priority)
    if budget_ms is not None:
        slo.budget_ms = budget_ms
    elif deadline_unix_ms is not None:
        slo.deadline_unix_ms = deadline_unix_ms
    return slo


def encode_inputs(inputs: Mapping[str, np.ndarray]) -> dict:
    return {name: wire.encode(array) for name, array in inputs.items()}


def infer_request(model: str, inputs: Mapping[str, np.ndarray], request_id: str = "", **slo) -> selection_pb2.InferRequest:
    return selection_pb2.InferRequest(model=model, id=request_id, inputs=encode_inputs(inputs), slo=make_slo(**slo))


def job_request(model: str, items: Sequence[Mapping[str, np.ndarray]], job_id: str = "",
                item_ids: Sequence[str] | None = None, **slo) -> selection_pb2.InferJobRequest:
    ids = item_ids or [f"{job_id or 'job'}-{i}" for i in range(len(items))]
    return selection_pb2.InferJobRequest(
        model=model, job_id=job_id, slo=make_slo(**slo),
        items=[selection_pb2.JobItem(id=i, inputs=encode_inputs(x)) for i, x in zip(ids, items)])


class MoselClient:
    """Thin convenience over the generated stub; every call takes a gRPC timeout."""

    def __init__(self, address: str, timeout_s: float = 30.0):
        self.address = address
        self.timeout_s = timeout_s
        self.channel = make_channel(address)
        self.stub = selection_pb2_grpc.SelectionServiceStub(self.channel)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(service="mosel.v1.SelectionService"), timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"selection service at {self.address} not SERVING after {timeout_s}s")
            time.sleep(0.1)

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], request_id: str = "", **slo):
        return self.stub.Infer(infer_request(model, inputs, request_id, **slo), timeout=self.timeout_s)

    def infer_job(self, model: str, items: Sequence[Mapping[str, np.ndarray]], job_id: str = "", **slo):
        return self.stub.InferJob(job_request(model, items, job_id, **slo), timeout=self.timeout_s)

    def infer_job_future(self, request: selection_pb2.InferJobRequest, timeout_s: float | None = None):
        """Non-blocking call of a prepared job request (see `job_request`)."""
        return self.stub.InferJob.future(request, timeout=timeout_s or self.timeout_s)

    def stream(self, messages: Iterable[selection_pb2.StreamRequest]) -> Iterator[selection_pb2.StreamResponse]:
        return self.stub.InferStream(iter(messages), timeout=self.timeout_s)

    def metadata(self, model: str) -> selection_pb2.ModelMetadata:
        return self.stub.GetModelMetadata(selection_pb2.ModelMetadataRequest(model=model), timeout=self.timeout_s)

    def stats(self, model: str = "") -> selection_pb2.Stats:
        return self.stub.GetStats(selection_pb2.StatsRequest(model=model), timeout=self.timeout_s)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
