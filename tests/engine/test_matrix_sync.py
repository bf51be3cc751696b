"""Integration: a real profile store process; the selection service's ProfileSync loads the
strategy matrix at start and picks up a new version through Watch."""

from __future__ import annotations

import time

import pytest

from mosel.planning.costs import CostModel
from mosel.protocol.records import (accuracies_from_profile, cost_from_latency_profile, matrix_from_proto,
                                    matrix_to_proto)
from mosel.lifecycle.solve import solve_from_store
from mosel.lifecycle.profile import profile_latency
from mosel.lifecycle.publish import publish
from mosel.engine.served_model import ServedModel
from mosel.engine.profile_sync import ProfileSync
from mosel.planning.solver import solve_matrix
from mosel.launch.stack import Stack
from mosel.store.client import ProfileStoreClient

MODEL = "av-digits"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    stack = Stack(home=tmp_path_factory.mktemp("matrix-sync-store"))
    address = stack.start_store()
    client = ProfileStoreClient(address)
    client.wait_ready(30)
    yield client
    client.close()
    codes = stack.stop()
    assert codes == {"profile_store": 0}, codes


@pytest.fixture(scope="module")
def published(store, tiny_model_home):
    versions = publish(store, MODEL, tiny_model_home, progress=False)
    profile = profile_latency(MODEL, home=tiny_model_home, max_batch=4, warmup=0, repeats=1, progress=False)
    latency_ref = store.put_latency_profile(profile)
    return versions, latency_ref


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_selection_loads_the_matrix_at_start_and_follows_new_versions(store, published, tiny_model_home):
    versions, latency_ref = published
    first = solve_from_store(store, MODEL)
    assert first.ref.variant == "fp32" and first.latency.ref.version == latency_ref.version
    assert first.accuracy.ref.version == versions["accuracy"]
    assert versions["size"] == "tiny"  # the preset of the checkpoint actually served
    stored = store.get_strategy_matrix(MODEL)
    assert stored.ref.version == first.ref.version and stored.latency_profile_version == latency_ref.version
    assert matrix_from_proto(stored) == first.matrix

    model = ServedModel.load(MODEL, home=tiny_model_home)
    assert model.profiles.matrix is None
    sync = ProfileSync(store, {MODEL: model})
    sync.load_all()
    loaded = model.profiles
    assert loaded.matrix_version == first.ref.version
    assert loaded.matrix == first.matrix
    assert loaded.latency_version == latency_ref.version
    assert isinstance(loaded.cost, CostModel) and loaded.cost == first.matrix.cost_model()
    assert loaded.accuracy == accuracies_from_profile(first.accuracy)  # the accuracy loader still runs
    assert model.latency_b1_ms("audio") == pytest.approx(loaded.cost.latency({"audio": 1}))
    assert model.latency_b1_ms("audio") > 0

    sync.start(after_seq=stored.ref.seq)
    try:
        # A new version: same profiles, solved for encoders on separate devices.
        latency = store.get_latency_profile(MODEL, variant="cpu-fp32")
        cost = cost_from_latency_profile(latency, placement="separate")
        matrix = solve_matrix(cost, accuracies_from_profile(first.accuracy), max_batch=latency.max_batch)
        ref = store.put_strategy_matrix(matrix_to_proto(
            matrix, MODEL, latency_version=latency.ref.version, accuracy_version=first.accuracy.ref.version,
            precision="fp32", solve_ms=1.0))
        assert ref.version == first.ref.version + 1
        assert _wait_for(lambda: model.profiles.matrix_version == ref.version), \
            f"matrix v{ref.version} not picked up (serving v{model.profiles.matrix_version})"
        now = model.profiles
        assert now.cost.placement == "separate"
        assert [s.counts for s in now.matrix.row(4)] == [s.counts for s in matrix.row(4)]
        assert now.matrix.source["version"] == ref.version
        assert now.accuracy == loaded.accuracy
    finally:
        sync.stop()


def test_solve_without_a_latency_profile_names_the_command(store, published):
    from mosel.lifecycle.solve import MissingProfile

    with pytest.raises(MissingProfile, match="mosel profile"):
        solve_from_store(store, MODEL, precision="bf16")


def test_store_session_starts_and_stops_a_temporary_store(tmp_path):
    import socket

    from mosel.launch.store_session import DEFAULT_STORE, store_session

    host, port = DEFAULT_STORE.split(":")
    with socket.socket() as s:
        if s.connect_ex((host, int(port))) == 0:
            pytest.skip(f"something serves on {DEFAULT_STORE}; the session would use it")
    with store_session(home=tmp_path, probe_s=0.3) as session:
        assert session.temporary and session.address != DEFAULT_STORE
        assert session.client.list_models() == []
        address = session.address
    assert (tmp_path / "profile_store.sqlite").exists()
    with ProfileStoreClient(address) as gone, pytest.raises(TimeoutError):
        gone.wait_ready(0.5)
