"""The profile store as a real service: `python -m services.profile_store` in a subprocess,
called over loopback gRPC (SQLite file, and PostgreSQL shared by two store processes)."""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from mosel.launch.stack import spawn
from mosel.modalities import all_configurations
from mosel.server.channels import make_channel
from mosel.store.client import ProfileStoreClient
from mosel.protocol.v1 import profile_store_pb2 as pb
from mosel.protocol.v1 import tensor_pb2
from tests.pg import postgres_server, postgres_url  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]
SERVICE = "mosel.v1.ProfileStoreService"
MODALITIES = ("audio", "image", "video")
CONFIGS = all_configurations(MODALITIES)
ACCURACY = {"audio+image+video": 0.92, "audio+image": 0.88, "audio+video": 0.90, "image+video": 0.85,
            "audio": 0.80, "image": 0.70, "video": 0.75}


# -- a store process ---------------------------------------------------------------------

class StoreProcess:
    def __init__(self, db: str, workdir: Path, name: str = "store"):
        self.ready_file = workdir / f"{name}.port"
        self.log_path = workdir / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._log = open(self.log_path, "w")
        self.proc = spawn(  # dies with the test process, even a killed one
            [sys.executable, "-m", "services.profile_store", "--port", "0", "--ready-file", str(self.ready_file),
             "--db", db, "--grace-s", "5", "--poll-ms", "100"],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.address = ""

    def wait_ready(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"store exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"store not ready after {timeout_s}s:\n{self.log_path.read_text()}")
            time.sleep(0.02)
        self.address = f"127.0.0.1:{int(self.ready_file.read_text())}"
        return self.address

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"store did not exit after SIGTERM:\n{self.log_path.read_text()}")
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("store")
    store = StoreProcess(str(workdir / "profiles.sqlite"), workdir)
    try:
        store.wait_ready()
        yield store
    finally:
        rc = store.terminate()
    assert rc == 0, store.log_path.read_text()


@pytest.fixture(scope="module")
def client(sqlite_store):
    c = ProfileStoreClient(sqlite_store.address, timeout_s=10)
    c.wait_ready(10)
    yield c
    c.close()


@pytest.fixture
def model(client) -> str:
    """A freshly registered model of its own, so tests sharing the server do not interact."""
    name = f"toy-{uuid.uuid4().hex[:8]}"
    client.register_model(manifest(name))
    return name


# -- valid records -----------------------------------------------------------------------

def manifest(name: str) -> pb.ModelManifest:
    specs = {
        "audio": tensor_pb2.TensorSpec(dtype="float32", shape=[-1, 40], sequence=True, max_steps=100),
        "image": tensor_pb2.TensorSpec(dtype="uint8", shape=[28, 28]),
        "video": tensor_pb2.TensorSpec(dtype="uint8", shape=[-1, 28, 28], sequence=True, max_steps=16),
    }
    return pb.ModelManifest(
        name=name,
        modalities=[pb.ModalityManifest(name=m, spec=specs[m], description=f"{m} input") for m in MODALITIES],
        configurations=CONFIGS, labels=[str(d) for d in range(10)], embed_dim=64,
        checkpoint_sha256="ab" * 32, manifest_json='{"trained": true}')


def latency_profile(model: str, max_batch: int = 4, device: str = "cpu", precision: str = "fp32",
                    cost_model: str = "late_fusion") -> pb.LatencyProfile:
    units = MODALITIES if cost_model == "late_fusion" else CONFIGS
    series = []
    for k, unit in enumerate(units, start=1):
        median = [0.0] + [k * (1.0 + 0.5 * n) for n in range(1, max_batch + 1)]
        series.append(pb.LatencySeries(unit=unit, median_ms=median, p95_ms=[1.2 * v for v in median]))
    return pb.LatencyProfile(
        model=model, cost_model=cost_model, placement="shared" if cost_model == "late_fusion" else "",
        max_batch=max_batch, series=series, head_ms=[0.0] + [0.1 * n for n in range(1, max_batch + 1)],
        device=device, device_name="test device", precision=precision, warmup=2, repeats=5, code_version="test")


def accuracy_profile(model: str, precision: str = "fp32") -> pb.AccuracyProfile:
    return pb.AccuracyProfile(
        model=model, split="test", precision=precision,
        configurations=[pb.ConfigurationAccuracy(configuration=c, accuracy=ACCURACY[c], samples=500,
                                                 ci_low=ACCURACY[c] - 0.03, ci_high=ACCURACY[c] + 0.03)
                        for c in CONFIGS])


def strategy_matrix(model: str, max_batch: int = 3, precision: str = "fp32") -> pb.StrategyMatrix:
    accuracies = [ACCURACY[c] for c in CONFIGS]
    rows = []
    for b in range(1, max_batch + 1):
        strategies = []
        for config, per_request_ms in (("image", 1.0), ("audio", 2.0), ("audio+image+video", 5.0)):
            counts = [b if c == config else 0 for c in CONFIGS]
            strategies.append(pb.Strategy(counts=counts, accuracy=ACCURACY[config], latency_ms=b * per_request_ms,
                                          target=ACCURACY[config]))
        rows.append(pb.StrategyRow(job_size=b, strategies=strategies))
    return pb.StrategyMatrix(model=model, configurations=CONFIGS, accuracies=accuracies, targets=[0.7, 0.8, 0.92],
                             max_batch=max_batch, rows=rows, latency_profile_version=1, accuracy_profile_version=1,
                             cost_model="late_fusion", placement="shared", precision=precision, solve_ms=12.5,
                             cost_json='{"kind": "late_fusion"}')


def tuning(model: str) -> pb.TuningRecord:
    return pb.TuningRecord(model=model, thresholds={"budget_margin": 0.91, "slack_ms": 17.0},
                           strategy_matrix_version=1, latency_profile_version=1, study="test-study",
                           objectives={"throughput": 123.0}, validation_json="{}")


class Collector:
    """Drains a watch stream on a thread, so tests can wait for events with a timeout."""

    def __init__(self, stream):
        self.stream = stream
        self.events: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self.stream:
                self.events.put(event)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        finally:
            self.finished.set()

    def next(self, timeout_s: float = 10.0) -> pb.VersionEvent:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"no watch event within {timeout_s}s (stream error: {self.error!r})")

    def stop(self) -> None:
        self.stream.cancel()
        assert self.finished.wait(10), "watch stream did not end after cancel"
        assert self.error is None, self.error


# -- tests -------------------------------------------------------------------------------

def test_health_and_reflection(sqlite_store):
    with make_channel(sqlite_store.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection_db = ProtoReflectionDescriptorDatabase(channel)
        services = reflection_db.get_services()
        assert SERVICE in services
        assert "grpc.health.v1.Health" in services
        described = descriptor_pool.DescriptorPool(reflection_db).FindServiceByName(SERVICE)
        assert {"RegisterModel", "PutLatencyProfile", "ListVersions", "Watch"} <= {m.name for m in described.methods}


def test_register_get_and_list_models(client):
    name = f"toy-{uuid.uuid4().hex[:8]}"
    first = client.register_model(manifest(name))
    assert (first.model, first.kind, first.version, first.variant) == (name, pb.RECORD_KIND_MODEL, 1, "")
    assert first.seq > 0 and first.created_unix_ms > 0
    changed = manifest(name)
    changed.embed_dim = 128
    second = client.register_model(changed)
    assert second.version == 2 and second.seq > first.seq

    latest = client.get_model(name)
    assert latest.embed_dim == 128 and latest.ref == second
    assert list(latest.configurations) == CONFIGS
    assert latest.modalities[1].spec.shape == [28, 28] and latest.modalities[1].spec.dtype == "uint8"
    old = client.get_model(name, version=1)
    expected = manifest(name)
    expected.ref.CopyFrom(first)
    assert old == expected  # stored as protobuf JSON, read back field for field

    listed = {m.name: m for m in client.list_models()}
    assert listed[name].ref == second
    assert [v.version for v in client.list_versions(name, pb.RECORD_KIND_MODEL)] == [1, 2]

    with pytest.raises(grpc.RpcError) as err:
        client.get_model(f"ghost-{uuid.uuid4().hex[:6]}")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "not registered" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.get_model(name, version=3)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_put_and_get_every_record_kind(client, model):
    sent = latency_profile(model, device="cuda:1", precision="fp16")
    sent.ref.version = 99  # a client's ref is ignored: the store assigns it
    ref = client.put_latency_profile(sent)
    assert (ref.kind, ref.version, ref.variant) == (pb.RECORD_KIND_LATENCY_PROFILE, 1, "cuda-fp16")
    cpu = client.put_latency_profile(latency_profile(model, cost_model="joint"))
    assert (cpu.version, cpu.variant) == (2, "cpu-fp32")
    got = client.get_latency_profile(model, variant="cuda-fp16")
    assert got.ref == ref and list(got.series[2].median_ms) == list(sent.series[2].median_ms)
    assert got.device == "cuda:1" and got.placement == "shared"
    assert client.get_latency_profile(model).ref == cpu
    assert client.get_latency_profile(model, version=1).ref == ref
    assert len(client.get_latency_profile(model).series) == len(CONFIGS)

    acc_ref = client.put_accuracy_profile(accuracy_profile(model, precision="bf16"))
    assert (acc_ref.kind, acc_ref.version, acc_ref.variant) == (pb.RECORD_KIND_ACCURACY_PROFILE, 1, "bf16")
    acc = client.get_accuracy_profile(model, variant="bf16")
    assert {c.configuration: c.accuracy for c in acc.configurations} == ACCURACY and acc.ref == acc_ref

    sm_ref = client.put_strategy_matrix(strategy_matrix(model))
    assert (sm_ref.kind, sm_ref.version, sm_ref.variant) == (pb.RECORD_KIND_STRATEGY_MATRIX, 1, "fp32")
    sm = client.get_strategy_matrix(model)
    expected = strategy_matrix(model)
    expected.ref.CopyFrom(sm_ref)
    assert sm == expected

    tu_ref = client.put_tuning(tuning(model))
    assert (tu_ref.kind, tu_ref.version, tu_ref.variant) == (pb.RECORD_KIND_TUNING, 1, "")
    tu = client.get_tuning(model)
    assert dict(tu.thresholds) == {"budget_margin": 0.91, "slack_ms": 17.0} and tu.ref == tu_ref

    assert [v.variant for v in client.list_versions(model, "latency_profile")] == ["cuda-fp16", "cpu-fp32"]
    with pytest.raises(grpc.RpcError) as err:
        client.get_accuracy_profile(model, variant="fp16")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _truncate_series(p):
    del p.series[0].median_ms[-1]


BAD_INPUTS = [
    # (description, kind, builder, mutation, expected code, text the message must contain)
    ("missing batch sizes", "latency_profile", latency_profile, _truncate_series,
     grpc.StatusCode.INVALID_ARGUMENT, "series[0].median_ms"),
    ("NaN latency", "latency_profile", latency_profile,
     lambda p: p.series[1].median_ms.__setitem__(2, math.nan), grpc.StatusCode.INVALID_ARGUMENT,
     "series[1].median_ms[2]"),
    ("negative latency", "latency_profile", latency_profile,
     lambda p: p.series[2].median_ms.__setitem__(1, -3.0), grpc.StatusCode.INVALID_ARGUMENT,
     "series[2].median_ms[1]"),
    ("infinite p95", "latency_profile", latency_profile,
     lambda p: p.series[0].p95_ms.__setitem__(3, math.inf), grpc.StatusCode.INVALID_ARGUMENT, "series[0].p95_ms[3]"),
    ("nonzero empty batch", "latency_profile", latency_profile,
     lambda p: p.series[0].median_ms.__setitem__(0, 0.5), grpc.StatusCode.INVALID_ARGUMENT, "series[0].median_ms[0]"),
    ("unit not a modality", "latency_profile", latency_profile,
     lambda p: setattr(p.series[1], "unit", "text"), grpc.StatusCode.INVALID_ARGUMENT, "series[1].unit"),
    ("bad precision", "latency_profile", latency_profile,
     lambda p: setattr(p, "precision", "int8"), grpc.StatusCode.INVALID_ARGUMENT, "precision"),
    ("bad placement", "latency_profile", latency_profile,
     lambda p: setattr(p, "placement", "elsewhere"), grpc.StatusCode.INVALID_ARGUMENT, "placement"),
    ("accuracy above 1", "accuracy_profile", accuracy_profile,
     lambda p: setattr(p.configurations[0], "accuracy", 1.2), grpc.StatusCode.INVALID_ARGUMENT,
     "configurations[0].accuracy"),
    ("CI bound below 0", "accuracy_profile", accuracy_profile,
     lambda p: setattr(p.configurations[3], "ci_low", -0.1), grpc.StatusCode.INVALID_ARGUMENT,
     "configurations[3].ci_low"),
    ("configuration missing", "accuracy_profile", accuracy_profile,
     lambda p: p.configurations.pop(), grpc.StatusCode.INVALID_ARGUMENT, "configurations: missing ['video']"),
    ("no samples", "accuracy_profile", accuracy_profile,
     lambda p: setattr(p.configurations[1], "samples", 0), grpc.StatusCode.INVALID_ARGUMENT,
     "configurations[1].samples"),
    ("configurations not the manifest's", "strategy_matrix", strategy_matrix,
     lambda p: p.configurations.__setitem__(0, "video+audio+image"), grpc.StatusCode.INVALID_ARGUMENT,
     "configurations[0]"),
    ("counts not summing to job size", "strategy_matrix", strategy_matrix,
     lambda p: p.rows[1].strategies[0].counts.__setitem__(6, 1), grpc.StatusCode.INVALID_ARGUMENT,
     "rows[1].strategies[0].counts"),
    ("row missing", "strategy_matrix", strategy_matrix,
     lambda p: p.rows.pop(), grpc.StatusCode.INVALID_ARGUMENT, "rows: missing rows for job sizes 3"),
    ("accuracy out of range", "strategy_matrix", strategy_matrix,
     lambda p: p.accuracies.__setitem__(2, 1.5), grpc.StatusCode.INVALID_ARGUMENT, "accuracies[2]"),
    ("infinite threshold", "tuning", tuning,
     lambda p: p.thresholds.__setitem__("budget_margin", math.inf), grpc.StatusCode.INVALID_ARGUMENT,
     "thresholds['budget_margin']"),
    ("unknown model", "latency_profile", latency_profile,
     lambda p: setattr(p, "model", "ghost-model"), grpc.StatusCode.NOT_FOUND, "ghost-model"),
]

PUT = {"latency_profile": "put_latency_profile", "accuracy_profile": "put_accuracy_profile",
       "strategy_matrix": "put_strategy_matrix", "tuning": "put_tuning"}


@pytest.mark.parametrize("what, kind, build, mutate, code, text", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_stored(client, model, what, kind, build, mutate, code, text):
    put = getattr(client, PUT[kind])
    put(build(model))  # one good version first
    before = client.list_versions(model, kind)
    bad = build(model)
    mutate(bad)
    with pytest.raises(grpc.RpcError) as err:
        put(bad)
    assert err.value.code() == code, err.value.details()
    assert text in err.value.details()
    assert client.list_versions(model, kind) == before
    assert client.list_versions(bad.model, kind) == ([] if bad.model != model else before)


def test_bad_manifest_is_refused_and_nothing_stored(client):
    name = f"toy-{uuid.uuid4().hex[:8]}"
    cases = [
        (lambda m: m.configurations.pop(0), "configurations: missing ['audio+image+video']"),
        (lambda m: m.configurations.__setitem__(1, "image+audio"), "configurations[1]"),
        (lambda m: m.configurations.append("audio"), "configurations[7]"),
        (lambda m: m.modalities[2].spec.__setattr__("dtype", "complex64"), "modalities[2].spec.dtype"),
        (lambda m: m.modalities[1].spec.shape.__setitem__(0, 0), "modalities[1].spec.shape[0]"),
        (lambda m: m.ClearField("modalities"), "modalities"),
        (lambda m: setattr(m, "name", ""), "name"),
    ]
    for mutate, text in cases:
        bad = manifest(name)
        mutate(bad)
        with pytest.raises(grpc.RpcError) as err:
            client.register_model(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, text
        assert text in err.value.details()
    assert client.list_versions(name, "model") == []
    assert name not in {m.name for m in client.list_models()}


def test_bad_requests(client, model):
    with pytest.raises(grpc.RpcError) as err:
        client.list_versions(model, pb.RECORD_KIND_UNSPECIFIED)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.get_model(model, version=-1)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "version" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.get_tuning("")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "model" in err.value.details()


def test_watch_streams_new_versions_and_resumes(client, model):
    stream = Collector(client.watch(models=[model]))
    assert stream.stream.after_seq is not None
    other = Collector(client.watch(kinds=["tuning"]))
    lat = client.put_latency_profile(latency_profile(model))
    client.register_model(manifest(f"other-{uuid.uuid4().hex[:6]}"))  # filtered out of `stream`
    tun = client.put_tuning(tuning(model))
    assert stream.next().ref == lat
    assert stream.next().ref == tun
    assert other.next().ref == tun
    stream.stop()
    other.stop()
    assert stream.events.empty() and other.events.empty()

    # Resuming after an event's seq replays exactly what came after it.
    resumed = Collector(client.watch(models=[model], after_seq=lat.seq))
    assert resumed.next().ref == tun
    acc = client.put_accuracy_profile(accuracy_profile(model))
    assert resumed.next().ref == acc
    resumed.stop()


def test_sigterm_ends_watches_and_exits_zero(tmp_path):
    store = StoreProcess(str(tmp_path / "profiles.sqlite"), tmp_path)
    try:
        address = store.wait_ready()
        with ProfileStoreClient(address) as c:
            c.wait_ready(10)
            ref = c.register_model(manifest("toy"))
            stream = Collector(c.watch())
            store.proc.send_signal(signal.SIGTERM)
            assert stream.finished.wait(10), "watch stream still open after SIGTERM"
            assert stream.error is None, stream.error  # ended cleanly (OK), not cut off
            assert store.proc.wait(15) == 0, store.log_path.read_text()
        log = store.log_path.read_text()
        assert "received SIGTERM" in log and "stopped" in log
    finally:
        store.terminate()
    # Durable: a new process on the same file sees the write.
    again = StoreProcess(str(tmp_path / "profiles.sqlite"), tmp_path, name="again")
    try:
        with ProfileStoreClient(again.wait_ready()) as c:
            assert c.get_model("toy").ref == ref
    finally:
        assert again.terminate() == 0


def test_two_store_processes_share_postgresql(postgres_url, tmp_path):
    # Both open the fresh database at once, racing its migrations.
    a = StoreProcess(postgres_url, tmp_path, name="a")
    b = StoreProcess(postgres_url, tmp_path, name="b")
    try:
        with ProfileStoreClient(a.wait_ready()) as ca, ProfileStoreClient(b.wait_ready()) as cb:
            ca.wait_ready(10)
            cb.wait_ready(10)
            watch_a = Collector(ca.watch(models=["toy"]))
            ref = cb.register_model(manifest("toy"))  # written through B
            assert watch_a.next().ref == ref  # seen by A's poll of the shared database
            lat = ca.put_latency_profile(latency_profile("toy", device="cuda", precision="fp16"))
            assert watch_a.next().ref == lat
            assert cb.get_latency_profile("toy", variant="cuda-fp16").ref == lat
            assert ca.get_model("toy").ref == ref
            with pytest.raises(grpc.RpcError) as err:
                cb.put_accuracy_profile(accuracy_profile("ghost"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            watch_a.stop()
    finally:
        rc_a, rc_b = a.terminate(), b.terminate()
    assert (rc_a, rc_b) == (0, 0), a.log_path.read_text() + b.log_path.read_text()
