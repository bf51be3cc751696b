"""EncoderPool over real gRPC: a replica that fails UNAVAILABLE is ejected and the call
retried on another; probes take a recovered replica back; a modality with no replica up is
reported down."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mosel.engine import encoder_pool
from mosel.engine.encoder_pool import EncoderPool
from mosel.errors import Unavailable
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import encoder_pb2, encoder_pb2_grpc


class Replica(encoder_pb2_grpc.EncoderServiceServicer):
    """A fake encoder: answers ones*value, or UNAVAILABLE while `down`."""

    def __init__(self, value: float):
        self.value, self.down, self.calls = value, False, 0
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        encoder_pb2_grpc.add_EncoderServiceServicer_to_server(self, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.set_down(False)

    def set_down(self, down: bool) -> None:
        self.down = down
        self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING if down else health_pb2.HealthCheckResponse.SERVING)

    def Encode(self, request, context):
        self.calls += 1
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "encoder is draining")
        if not request.items:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "items: empty batch")
        return encoder_pb2.EncodeResponse(embeddings=wire.encode(np.full((len(request.items), 2), self.value, np.float32)))


@pytest.fixture
def replicas():
    pair = [Replica(1.0), Replica(2.0)]
    yield pair
    for r in pair:
        r.server.stop(0)


def _items():
    return [wire.encode(np.zeros(3, np.float32))]


def test_a_down_replica_is_ejected_and_the_call_retried_on_the_other(replicas, monkeypatch):
    monkeypatch.setattr(encoder_pool, "PROBE_INTERVAL_S", 0.05)
    pool = EncoderPool("m", {"audio": [f"127.0.0.1:{r.port}" for r in replicas]}, 1 << 20)
    changes = []
    pool.on_change.append(lambda: changes.append(set(pool.down_modalities())))
    try:
        replicas[0].set_down(True)
        answers = {float(pool.encode("audio", _items(), 10.0)[0][0, 0]) for _ in range(6)}
        assert answers == {2.0}  # every call served, by the replica that is up
        assert pool.replicas_up() == {"audio": [f"127.0.0.1:{replicas[1].port}"]}
        assert pool.down_modalities() == set()

        replicas[1].set_down(True)
        with pytest.raises(Unavailable, match="no audio encoder"):
            pool.encode("audio", _items(), 10.0)
        assert pool.down_modalities() == {"audio"} and changes[-1] == {"audio"}

        pool.start_probing()
        replicas[0].set_down(False)
        stop = time.monotonic() + 300  # probes run every 0.05 s here; the bound only stops a hang
        while pool.down_modalities():
            assert time.monotonic() < stop, "the prober never took the replica back"
            time.sleep(0.01)
        assert float(pool.encode("audio", _items(), 10.0)[0][0, 0]) == 1.0
        assert changes[-1] == set()
    finally:
        pool.close()


def test_a_refusal_that_is_not_about_the_replica_is_not_retried(replicas):
    pool = EncoderPool("m", {"audio": [f"127.0.0.1:{r.port}" for r in replicas]}, 1 << 20)
    try:
        with pytest.raises(grpc.RpcError) as err:
            pool.encode("audio", [], 10.0)  # the request's own fault: not the replica's, not retried
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sum(r.calls for r in replicas) == 1
        assert pool.down_modalities() == set() and len(pool.replicas_up()["audio"]) == 2
    finally:
        pool.close()
