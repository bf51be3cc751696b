"""Idle Watch streams must not take the profile store's handler threads (issue #15, point 4):
`python -m services.profile_store` in a subprocess, driven over loopback gRPC.

Each open Watch holds a server thread for its whole life. The store serves at most
--max-watch-streams of them (more are refused with RESOURCE_EXHAUSTED) on threads given on
top of the handler pool, so health checks and reads answer however many watchers are idle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mosel.server.channels import make_channel
from mosel.server.serve import DEFAULT_MAX_WORKERS
from mosel.store.client import ProfileStoreClient
from mosel.store.settings import DEFAULT_MAX_WATCH_STREAMS

REPO = Path(__file__).resolve().parents[2]
SERVICE = "mosel.v1.ProfileStoreService"


def start_store(workdir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    ready, log = workdir / "port", workdir / "store.log"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.profile_store", "--port", "0", "--ready-file",
                                 str(ready), "--db", str(workdir / "store.sqlite"), "--grace-s", "5", *flags],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"store did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return proc, f"127.0.0.1:{int(ready.read_text())}"


def stop_store(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def assert_answers(address: str) -> None:
    """Health (service-wide and the store's own), a read and a listing all answer."""
    with make_channel(address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    client = ProfileStoreClient(address, timeout_s=10)
    try:
        assert client.list_models() == []
        assert client.list_versions("nobody", "model") == []
    finally:
        client.close()


@pytest.fixture
def default_store(tmp_path):
    proc, address = start_store(tmp_path)
    ProfileStoreClient(address).wait_ready(10)
    yield address
    assert stop_store(proc) == 0


def test_the_cap_leaves_the_handler_pool_alone():
    # the cap is below the pool, and the pool is given the watchers' threads on top
    assert DEFAULT_MAX_WATCH_STREAMS < DEFAULT_MAX_WORKERS


def test_one_watch_beyond_the_cap_is_refused_and_health_still_answers(default_store):
    client = ProfileStoreClient(default_store, timeout_s=10)
    watches = []
    try:
        for _ in range(DEFAULT_MAX_WATCH_STREAMS):
            watches.append(client.watch())
            assert watches[-1].after_seq is not None, "a watch within the cap must be established"
        assert_answers(default_store)
        extra = client.watch()  # the N+1st
        assert extra.after_seq is None
        with pytest.raises(grpc.RpcError) as info:
            next(extra)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-watch-streams" in info.value.details()
        assert_answers(default_store)
        # A watch ending gives its place back (the server notices the cancel shortly).
        watches.pop().cancel()
        deadline = time.monotonic() + 30
        while True:
            again = client.watch()
            if again.after_seq is not None:
                watches.append(again)
                break
            assert time.monotonic() < deadline, "a cancelled watch never gave its place back"
            time.sleep(0.1)
    finally:
        for w in watches:
            w.cancel()
        client.close()


def test_more_idle_watches_than_handler_threads_do_not_starve_calls(tmp_path):
    """The issue's case: 31 idle watches used to take 31 of the 32 threads. With a cap above
    the old pool size, every call still answers: the watchers run on threads of their own."""
    cap = DEFAULT_MAX_WORKERS + 8
    proc, address = start_store(tmp_path, "--max-watch-streams", str(cap))
    client = ProfileStoreClient(address, timeout_s=10)
    watches = []
    try:
        client.wait_ready(10)
        for _ in range(cap):
            watches.append(client.watch())
            assert watches[-1].after_seq is not None
        assert_answers(address)
        refused = client.watch()
        with pytest.raises(grpc.RpcError) as info:
            next(refused)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert_answers(address)
    finally:
        for w in watches:
            w.cancel()
        client.close()
        assert stop_store(proc) == 0
