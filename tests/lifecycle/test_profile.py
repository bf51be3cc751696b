"""The latency profiler and the profile/matrix conversions, on the tiny trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mosel
from mosel.planning.costs import LateFusionCost
from mosel.encoder.runner import EncoderRunner
from mosel.errors import InvalidArgument
from mosel.protocol.records import (accuracies_from_profile, cost_from_latency_profile, matrix_from_proto,
                                    matrix_source, matrix_to_proto)
from mosel.models.checkpoint import load_manifest
from mosel.lifecycle.profile import format_profile, probe_precision, profile_latency
from mosel.lifecycle.publish import accuracy_proto, ensure_evaluated, manifest_proto
from mosel.repository.source import open_model
from mosel.planning.solver import solve_matrix
from mosel.store import validate
from mosel.protocol.v1 import profile_store_pb2 as ps

MODEL = "av-digits"
MODALITIES = ("audio", "image", "video")


@pytest.fixture(scope="module")
def manifest(tiny_model_home):
    return load_manifest(MODEL, home=tiny_model_home)


@pytest.fixture(scope="module")
def manifest_pb(manifest):
    return manifest_proto(manifest)


@pytest.fixture(scope="module")
def profile(tiny_model_home):
    return profile_latency(MODEL, home=tiny_model_home, max_batch=4, warmup=1, repeats=3, progress=False)


@pytest.fixture(scope="module")
def accuracy_pb(tiny_model_home, manifest):
    return accuracy_proto(MODEL, ensure_evaluated(open_model(MODEL, home=tiny_model_home)), manifest)


def test_profile_is_accepted_by_the_store_validator(profile, manifest_pb, manifest):
    validate.validate_latency_profile(profile, manifest_pb)  # raises InvalidArgument otherwise
    assert profile.cost_model == "late_fusion" and profile.placement == "shared"
    assert profile.max_batch == 4 and profile.device == "cpu" and profile.precision == "fp32"
    assert (profile.warmup, profile.repeats) == (1, 3)
    assert [s.unit for s in profile.series] == list(MODALITIES)
    for s in profile.series:
        assert len(s.median_ms) == len(s.p95_ms) == 5
        assert s.median_ms[0] == 0 and s.p95_ms[0] == 0
        assert all(v > 0 for v in s.median_ms[1:]), s.unit
        assert all(p >= m for m, p in zip(s.median_ms, s.p95_ms)), s.unit
    assert len(profile.head_ms) == 5 and profile.head_ms[0] == 0 and min(profile.head_ms[1:]) > 0
    assert profile.checkpoint_sha256 == manifest["checkpoint"]["sha256"]
    assert profile.code_version.startswith(mosel.__version__)
    assert profile.device_name


def test_every_batch_size_is_timed_on_real_test_items(tiny_model_home, monkeypatch):
    calls: list[tuple[str, int, list]] = []
    original = EncoderRunner.encode

    def spy(self, items, frame_stride=1):
        calls.append((self.modality, len(items), [np.array(x, copy=True) for x in items]))
        return original(self, items, frame_stride)

    monkeypatch.setattr(EncoderRunner, "encode", spy)
    profile_latency(MODEL, home=tiny_model_home, max_batch=3, warmup=2, repeats=2, progress=False)
    for m in MODALITIES:
        sizes = [n for modality, n, _ in calls if modality == m]
        assert sizes == [1] * 4 + [2] * 4 + [3] * 4, m  # (warmup + repeats) runs per batch size, 1..3
    runner = EncoderRunner(MODEL, "audio", home=tiny_model_home)
    samples = runner.pack.test_samples(limit=3)
    audio_batches = [items for modality, n, items in calls if modality == "audio" and n == 3]
    for got, (inputs, _) in zip(audio_batches[0], samples):
        np.testing.assert_array_equal(got, inputs["audio"])


def test_profile_rejects_bad_arguments(tiny_model_home):
    with pytest.raises(ValueError, match="precision"):
        profile_latency(MODEL, home=tiny_model_home, precision="int8", progress=False)
    with pytest.raises(ValueError, match="placement"):
        profile_latency(MODEL, home=tiny_model_home, placement="nowhere", progress=False)
    with pytest.raises(ValueError, match="max_batch"):
        profile_latency(MODEL, home=tiny_model_home, max_batch=0, progress=False)


def test_a_broken_profile_is_refused_by_the_validator(profile, manifest_pb):
    bad = ps.LatencyProfile()
    bad.CopyFrom(profile)
    del bad.series[1].median_ms[-1]
    with pytest.raises(InvalidArgument, match=r"series\[1\].median_ms"):
        validate.validate_latency_profile(bad, manifest_pb)


def test_format_profile_table(profile):
    text = format_profile(profile)
    lines = text.splitlines()
    assert "audio" in lines[1] and "video" in lines[1] and "head" in lines[1]
    first_cells = [line.split()[0] for line in lines[3:]]
    assert first_cells == ["1", "2", "4"]
    audio4 = float(lines[-1].split()[1])
    assert audio4 == pytest.approx(profile.series[0].median_ms[4], rel=0.01, abs=1e-4)


def test_probe_precision(tiny_model_home):
    assert probe_precision(MODEL, "fp32", home=tiny_model_home)[0]
    ok, why = probe_precision(MODEL, "int4", home=tiny_model_home)
    assert not ok and "int4" in why
    ok, why = probe_precision(MODEL, "bf16", home=tiny_model_home)  # depends on the torch build: just a verdict
    assert isinstance(ok, bool) and why


def test_cost_from_latency_profile_uses_the_measured_medians(profile):
    cost = cost_from_latency_profile(profile)
    assert isinstance(cost, LateFusionCost) and cost.placement == "shared"
    for s in profile.series:
        assert cost.encoder_latency[s.unit] == tuple(s.median_ms)
    assert cost.head_latency == tuple(profile.head_ms)
    med = {s.unit: s.median_ms for s in profile.series}
    assert cost.latency({"audio+video": 2, "image": 1}) == pytest.approx(
        med["audio"][2] + med["image"][1] + med["video"][2] + profile.head_ms[3])
    separate = cost_from_latency_profile(profile, placement="separate")
    assert separate.latency({"audio+image+video": 4}) == pytest.approx(
        max(med[m][4] for m in MODALITIES) + profile.head_ms[4])


def test_accuracies_from_profile(accuracy_pb):
    acc = accuracies_from_profile(accuracy_pb)
    assert set(acc) == set(all_configs()) and all(0 <= a <= 1 for a in acc.values())


def all_configs():
    from mosel.modalities import all_configurations

    return all_configurations(MODALITIES)


@pytest.fixture(scope="module")
def solved(profile, accuracy_pb):
    cost = cost_from_latency_profile(profile)
    source = matrix_source(MODEL, 0, 3, 2, "late_fusion", "shared", "fp32", 12.5)
    return solve_matrix(cost, accuracies_from_profile(accuracy_pb), max_batch=4, source=source)


def test_solved_matrix_proto_is_accepted_and_round_trips(solved, manifest_pb):
    msg = matrix_to_proto(solved, MODEL, latency_version=3, accuracy_version=2, precision="fp32", solve_ms=12.5)
    validate.validate_strategy_matrix(msg, manifest_pb)
    assert (msg.cost_model, msg.placement, msg.precision) == ("late_fusion", "shared", "fp32")
    assert json.loads(msg.cost_json) == solved.cost_model().to_dict()
    back = matrix_from_proto(msg)
    assert back == solved
    assert back.cost_model() == solved.cost_model()
    assert matrix_to_proto(back, MODEL, 3, 2, precision="fp32", solve_ms=12.5) == msg
    # and through the wire format
    wire = ps.StrategyMatrix.FromString(msg.SerializeToString())
    assert matrix_from_proto(wire) == solved


def test_tampered_matrix_protos_are_refused(solved, manifest_pb):
    msg = matrix_to_proto(solved, MODEL, 1, 1)
    bad = ps.StrategyMatrix()
    bad.CopyFrom(msg)
    bad.rows[2].strategies[0].accuracy += 0.01
    with pytest.raises(ValueError, match="accuracy"):
        matrix_from_proto(bad)
    with pytest.raises(InvalidArgument, match=r"rows\[2\].strategies\[0\].accuracy"):
        validate.validate_strategy_matrix(bad, manifest_pb)
    no_cost = ps.StrategyMatrix()
    no_cost.CopyFrom(msg)
    no_cost.cost_json = ""
    with pytest.raises(ValueError, match="cost_json"):
        matrix_from_proto(no_cost)
