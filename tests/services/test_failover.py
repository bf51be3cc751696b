"""Modality failover with real processes: SIGKILL an encoder replica and the selection
service keeps serving -- from the other replica, or without the modality -- and takes the
encoder back when it returns."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.client import MoselClient
from mosel.encoder.settings import EncoderSettings
from mosel.config import repo_root
from mosel.launch.stack import Stack, bring_up, launch, spawn, wait_ready
from mosel.models.registry import get_pack
from mosel.server.channels import make_channel

MODEL = "av-digits"


@pytest.fixture(scope="module")
def stack(tiny_model_home):
    s = Stack(home=tiny_model_home, model=MODEL)
    bring_up(s, progress=False, say=lambda *_: None)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def inputs():
    return get_pack(MODEL).test_samples(limit=1)[0][0]


def _until(condition, what: str, limit_s: float = 300.0):
    """Poll `condition`; the limit is far beyond what a busy machine needs (probes run every
    0.5 s) and only stops a broken build from hanging CI."""
    stop = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < stop, f"{what}: not within {limit_s:.0f} s"
        time.sleep(0.05)


def _health(address: str) -> int:
    with make_channel(address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def test_two_video_replicas_one_killed_loses_no_request(stack, inputs, tmp_path):
    spare = launch("encoder_video_spare", EncoderSettings(model=MODEL, modality="video"), tmp_path, stack.env)
    try:
        wait_ready([spare], 300)
        encoders = tuple(f"{m}={stack.endpoint('encoder_' + m)}" for m in ("audio", "image")) + (
            f"video={stack.endpoint('encoder_video')},{spare.address}",)
        selection = launch("selection_replicas", replace(stack.selection, profile_store=stack.endpoint("profile_store"),
                                                          models=(MODEL,), encoders=encoders), tmp_path, stack.env)
        try:
            wait_ready([selection], 300)
            with MoselClient(selection.address, timeout_s=30) as client, ThreadPoolExecutor(8) as pool:
                def call(_):
                    return client.infer(MODEL, inputs, budget_ms=5000)

                before = list(pool.map(call, range(16)))
                spare.proc.send_signal(signal.SIGKILL)
                spare.proc.wait()
                after = list(pool.map(call, range(48)))  # every one answered: retried on the survivor
            assert all(r.configuration == "audio+image+video" and not r.degraded for r in before + after)
        finally:
            selection.proc.terminate()
            selection.proc.wait()
    finally:
        if spare.proc.poll() is None:
            spare.proc.kill()
            spare.proc.wait()


def test_no_video_encoder_serves_from_audio_and_image_and_takes_it_back(stack, inputs):
    selection = stack.endpoint("selection")
    video = stack.services["encoder_video"]
    settings_argv = video.log_path.read_text().splitlines()[0]  # the command that started it
    video.proc.send_signal(signal.SIGKILL)
    video.proc.wait()
    with MoselClient(selection, timeout_s=30) as client:
        # the first call after the kill may find the dead encoder (ejected then) or already the probe's verdict
        _until(lambda: "video" in client.stats(MODEL).modalities_unavailable or _served_without_video(client, inputs),
               "video ejected")
        r = client.infer(MODEL, inputs, budget_ms=5000)
        assert r.configuration == "audio+image" and r.degraded and r.degraded_reason == "unavailable:video"
        assert client.stats(MODEL).requests_degraded_unavailable >= 1
        assert _health(selection) == health_pb2.HealthCheckResponse.SERVING  # configurations remain
        with pytest.raises(grpc.RpcError) as err:
            client.infer(MODEL, inputs, budget_ms=5000, required=["video"])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "video" in err.value.details()

        # the encoder comes back on its old port: the prober takes it back
        argv = [a for a in shlex.split(settings_argv) if not a.startswith("--port=")] + [f"--port={video.port}"]
        with open(video.log_path, "a") as log:
            video.proc = spawn(argv, env={**os.environ, **stack.env}, stdout=log, stderr=subprocess.STDOUT, cwd=str(repo_root()))
        _until(lambda: not client.stats(MODEL).modalities_unavailable, "video back")
        r = client.infer(MODEL, inputs, budget_ms=5000)
        assert r.configuration == "audio+image+video" and not r.degraded


def _served_without_video(client, inputs) -> bool:
    try:
        return client.infer(MODEL, inputs, budget_ms=5000).degraded_reason == "unavailable:video"
    except grpc.RpcError:
        return False
