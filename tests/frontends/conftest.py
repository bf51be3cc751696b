"""Fixtures of the KServe front tests: the real stack, and the fronts as processes beside it.

The fronts never run in the test process under gRPC: our `inference` messages and
tritonclient's cannot share one protobuf pool, and these tests drive them with the real
tritonclient. Two fronts are started:
- `gateway`: `python -m mosel.frontends` forwarding to the stack's selection service (mosel.v1 stub);
- `inprocess`: services.selection's own main with the KServe fronts registered in-process
  (tests/frontends/selection_with_kserve.py), wrapping its SelectionServicer directly.
Every process started here is stopped in a finally.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mosel.launch.stack import Stack, bring_up, log_tail, spawn, terminate

MODEL = "av-digits"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Front:
    """A front process: its gRPC and HTTP addresses (host:port) and its log."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    grpc_address: str = ""
    http_address: str = ""

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace_s: float = 30.0) -> int:
        """SIGTERM (the process drains), then SIGKILL after grace_s."""
        return terminate(self.proc, grace_s)


def start_front(name: str, module: str, args: list[str], tmp: Path, env: dict, timeout_s: float = 120.0) -> Front:
    """`python -m module args --ready-file G --http-ready-file H`; returns once both files hold ports."""
    grpc_ready, http_ready, log_path = tmp / "grpc-port", tmp / "http-port", tmp / f"{name}.log"
    with open(log_path, "w") as log:
        # spawn: the front dies with the test process, even a killed one
        proc = spawn([sys.executable, "-m", module, *args, "--ready-file", str(grpc_ready),
                      "--http-ready-file", str(http_ready)],
                     stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO), env={**os.environ, **env})
    front = Front(name, proc, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not grpc_ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{front.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {timeout_s:.0f}s:\n{front.log_tail()}")
            time.sleep(0.05)
        front.grpc_address = f"127.0.0.1:{int(grpc_ready.read_text())}"
        front.http_address = f"127.0.0.1:{int(http_ready.read_text())}"
        return front
    except BaseException:
        front.stop(5.0)
        raise


@pytest.fixture(scope="package")
def kserve_stack(tiny_model_home):
    s = Stack(home=tiny_model_home, model=MODEL)
    try:
        bring_up(s, progress=False, say=lambda *_: None)
        yield s
    finally:
        codes = s.stop()
    assert all(c == 0 for c in codes.values()), f"a service did not exit cleanly: {codes}"


@pytest.fixture(scope="package")
def gateway(kserve_stack, tmp_path_factory):
    front = start_front("kserve_gateway", "mosel.frontends",
                        ["--selection", kserve_stack.endpoint("selection"), "--port", "0", "--http-port", "0",
                         "--model", MODEL], tmp_path_factory.mktemp("gateway"), kserve_stack.env)
    try:
        yield front
    finally:
        code = front.stop()
    assert code == 0, f"the gateway did not exit cleanly ({code}); log:\n{front.log_tail()}"


@pytest.fixture(scope="package")
def inprocess(kserve_stack, tmp_path_factory):
    s = kserve_stack
    args = ["--port", "0", "--profile-store", s.endpoint("profile_store"), "--model", MODEL, "--policy", "agnostic"]
    for modality in s.modalities:
        args += ["--encoder", f"{modality}={s.endpoint('encoder_' + modality)}"]
    front = start_front("selection_kserve", "tests.frontends.selection_with_kserve", args,
                        tmp_path_factory.mktemp("inprocess"), s.env)
    try:
        yield front
    finally:
        code = front.stop()
    assert code == 0, f"the selection service with KServe did not exit cleanly ({code}); log:\n{front.log_tail()}"


@pytest.fixture(params=["gateway", "inprocess"])
def front(request) -> Front:
    """Each test using it runs against both fronts."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def samples():
    from mosel.models.registry import get_pack

    return get_pack(MODEL).test_samples(limit=12)


def stack_rows(samples, modalities=("audio", "image", "video")) -> dict[str, np.ndarray]:
    """The samples as one batch per modality; sequences cropped to the shortest (KServe tensors are dense)."""
    out = {}
    for m in modalities:
        arrays = [x[m] for x, _ in samples]
        steps = min(a.shape[0] for a in arrays)
        same = all(a.shape == arrays[0].shape for a in arrays)
        out[m] = np.stack(arrays if same else [a[:steps] for a in arrays])
    return out
