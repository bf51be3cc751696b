"""Clients of the encoder services of one model: replicas per modality, round robin."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.errors import Unavailable
from mosel.protocol import tensors as wire
from mosel.server.channels import make_channel
from mosel.protocol.v1 import encoder_pb2, encoder_pb2_grpc

log = logging.getLogger(__name__)


def parse_encoder_flags(values: list[str], default_model: str) -> dict[str, dict[str, list[str]]]:
    """`[model/]modality=host:port[,host:port...]` -> {model: {modality: [addresses]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for value in values:
        key, sep, addresses = value.partition("=")
        if not sep or not addresses:
            raise ValueError(f"--encoder {value!r}: expected [model/]modality=host:port[,host:port]")
        model, _, modality = key.rpartition("/")
        out.setdefault(model or default_model, {}).setdefault(modality, []).extend(
            a.strip() for a in addresses.split(",") if a.strip())
    return out


class EncoderPool:
    def __init__(self, model: str, addresses: dict[str, list[str]], max_message_bytes: int):
        self.model = model
        self.addresses = addresses
        self._channels = {m: [make_channel(a, max_message_bytes) for a in addrs] for m, addrs in addresses.items()}
        self._stubs = {m: [encoder_pb2_grpc.EncoderServiceStub(c) for c in chans] for m, chans in self._channels.items()}
        self._next = {m: itertools.cycle(range(len(s))) for m, s in self._stubs.items()}
        self._lock = threading.Lock()

    def modalities(self) -> set[str]:
        return set(self._stubs)

    def _pick(self, modality: str) -> encoder_pb2_grpc.EncoderServiceStub:
        stubs = self._stubs.get(modality)
        if not stubs:
            raise Unavailable(f"no encoder service configured for modality {modality!r} of {self.model!r}")
        with self._lock:
            return stubs[next(self._next[modality])]

    def encode(self, modality: str, tensors: list, timeout_s: float, digest: str = "") -> tuple[np.ndarray, int]:
        """Embeddings float32 [len(tensors), D] by the weights `digest` names ("" = whichever the
        encoder serves), and the encoder's compute time in µs."""
        request = encoder_pb2.EncodeRequest(model=self.model, modality=modality, items=tensors, model_digest=digest)
        response = self._pick(modality).Encode(request, timeout=max(timeout_s, 0.001))
        return wire.decode(response.embeddings, field="embeddings"), response.compute_us

    def info(self, timeout_s: float = 2.0) -> dict[str, list[encoder_pb2.EncoderInfo]]:
        return {m: [s.Info(encoder_pb2.EncoderInfoRequest(), timeout=timeout_s) for s in stubs]
                for m, stubs in self._stubs.items()}

    def wait_serving(self, timeout_s: float) -> None:
        """Block until every replica reports SERVING; raise Unavailable naming the laggards."""
        deadline = time.monotonic() + timeout_s
        pending = [(m, a, ch) for m, chans in self._channels.items() for a, ch in zip(self.addresses[m], chans)]
        while pending and time.monotonic() < deadline:
            still = []
            for m, a, ch in pending:
                try:
                    r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if r.status != health_pb2.HealthCheckResponse.SERVING:
                        still.append((m, a, ch))
                except grpc.RpcError:
                    still.append((m, a, ch))
            pending = still
            if pending:
                time.sleep(0.2)
        if pending:
            raise Unavailable("encoders not serving: " + ", ".join(f"{m}@{a}" for m, a, _ in pending))

    def close(self) -> None:
        for chans in self._channels.values():
            for ch in chans:
                ch.close()
