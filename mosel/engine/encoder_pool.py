"""Clients of the encoder services of one model: replicas per modality, round robin."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass

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


# Replicas are probed this often; a failed call ejects its replica at once, a probe that
# finds it SERVING takes it back.
PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 1.0
# Codes that mean "this replica cannot take calls now" (down, draining, warming up): eject
# it and retry on another replica. Any other code is the request's own fate.
_REPLICA_DOWN = (grpc.StatusCode.UNAVAILABLE,)


@dataclass
class _Replica:
    address: str
    channel: grpc.Channel
    stub: encoder_pb2_grpc.EncoderServiceStub
    up: bool = True


class EncoderPool:
    def __init__(self, model: str, addresses: dict[str, list[str]], max_message_bytes: int):
        self.model = model
        self.addresses = addresses
        self._replicas = {m: [_Replica(a, ch, encoder_pb2_grpc.EncoderServiceStub(ch))
                              for a, ch in ((a, make_channel(a, max_message_bytes)) for a in addrs)]
                          for m, addrs in addresses.items()}
        self._next = {m: itertools.count() for m in self._replicas}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        self.on_change: list = []  # callables run (no arguments) when a modality goes down or comes back

    def modalities(self) -> set[str]:
        return set(self._replicas)

    def down_modalities(self) -> set[str]:
        """Modalities with no replica up: plans must do without them."""
        with self._lock:
            return {m for m, reps in self._replicas.items() if not any(r.up for r in reps)}

    def replicas_up(self) -> dict[str, list[str]]:
        with self._lock:
            return {m: [r.address for r in reps if r.up] for m, reps in self._replicas.items()}

    def _pick(self, modality: str, tried: set[str]) -> _Replica | None:
        replicas = self._replicas.get(modality)
        if not replicas:
            raise Unavailable(f"no encoder service configured for modality {modality!r} of {self.model!r}")
        with self._lock:
            live = [r for r in replicas if r.up and r.address not in tried]
            return live[next(self._next[modality]) % len(live)] if live else None

    def _set_up(self, modality: str, replica: _Replica, up: bool) -> None:
        with self._lock:
            if replica.up == up:
                return
            before = any(r.up for r in self._replicas[modality])
            replica.up = up
            after = any(r.up for r in self._replicas[modality])
        log.warning("%s: %s encoder %s is %s", self.model, modality, replica.address, "back" if up else "ejected")
        if before != after:
            log.warning("%s: modality %s is %s", self.model, modality, "available again" if after else
                        "unavailable: serving without it")
            for hook in self.on_change:
                hook()

    def encode(self, modality: str, tensors: list, timeout_s: float, digest: str = "") -> tuple[np.ndarray, int]:
        """Embeddings float32 [len(tensors), D] by the weights `digest` names ("" = whichever the
        encoder serves), and the encoder's compute time in µs. A replica that is down is ejected
        and the call retried on the next one while time remains."""
        request = encoder_pb2.EncodeRequest(model=self.model, modality=modality, items=tensors, model_digest=digest)
        deadline = time.monotonic() + max(timeout_s, 0.001)
        tried: set[str] = set()
        while True:
            replica = self._pick(modality, tried)
            if replica is None:
                raise Unavailable(f"no {modality} encoder of {self.model!r} is up"
                                  + (f" (tried {', '.join(sorted(tried))})" if tried else ""))
            tried.add(replica.address)
            try:
                response = replica.stub.Encode(request, timeout=max(deadline - time.monotonic(), 0.001))
            except grpc.RpcError as exc:
                if exc.code() not in _REPLICA_DOWN or time.monotonic() >= deadline:
                    raise
                self._set_up(modality, replica, False)
                continue
            return wire.decode(response.embeddings, field="embeddings"), response.compute_us

    def start_probing(self) -> None:
        """Health-check every replica in the background: eject the failing, take back the recovered."""
        self._prober = threading.Thread(target=self._probe_loop, name=f"probe-{self.model}", daemon=True)
        self._prober.start()

    def _probe_loop(self) -> None:
        while not self._stop.wait(PROBE_INTERVAL_S):
            for modality, replicas in self._replicas.items():
                for replica in replicas:
                    self._set_up(modality, replica, self._serving(replica.channel))

    @staticmethod
    def _serving(channel: grpc.Channel) -> bool:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                 timeout=PROBE_TIMEOUT_S).status
        except grpc.RpcError:
            return False
        return status == health_pb2.HealthCheckResponse.SERVING

    def info(self, timeout_s: float = 2.0) -> dict[str, list[encoder_pb2.EncoderInfo]]:
        return {m: [r.stub.Info(encoder_pb2.EncoderInfoRequest(), timeout=timeout_s) for r in reps]
                for m, reps in self._replicas.items()}

    def wait_serving(self, timeout_s: float) -> None:
        """Block until every replica reports SERVING; raise Unavailable naming the laggards."""
        deadline = time.monotonic() + timeout_s
        pending = [(m, r) for m, reps in self._replicas.items() for r in reps]
        while pending and time.monotonic() < deadline:
            pending = [(m, r) for m, r in pending if not self._serving(r.channel)]
            if pending:
                time.sleep(0.2)
        if pending:
            raise Unavailable("encoders not serving: " + ", ".join(f"{m}@{r.address}" for m, r in pending))

    def close(self) -> None:
        self._stop.set()
        if self._prober is not None:
            self._prober.join(timeout=2 * PROBE_TIMEOUT_S)
        for reps in self._replicas.values():
            for r in reps:
                r.channel.close()
