"""A model that exists only in a temporary directory, taken the whole way as a user would:
`mosel train --pack`, `mosel model export`, `check`, `eval`, then `mosel profile` and
`mosel solve` against a store, and served over gRPC by separately started services that load
it from the repository alone (no pack code), degrading a modality when deadlines press."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from mosel.client import MoselClient
from mosel.config import repo_root
from mosel.launch.stack import Stack, bring_up
from mosel.repository.data import load_labelled
from mosel.repository.source import open_version
from mosel.store.client import ProfileStoreClient
from tests.repository.toy_pack_source import SOURCE

MODEL = "toy-sensor"


def _mosel(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosel.cli", "--log-level", "WARNING", *args], cwd=str(repo_root()),
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """home (trained pack), repository (exported version 1), the env the commands ran with."""
    root = tmp_path_factory.mktemp("own-model")
    code = root / "code"
    code.mkdir()
    (code / "toy_pack.py").write_text(SOURCE)
    home, repository = root / "home", root / "repository"
    env = {**os.environ, "MOSEL_HOME": str(home), "PYTHONPATH": str(code)}
    trained = _mosel(env, "train", "--pack", "toy_pack:ToyPack", "--model", MODEL, "--no-progress", "--no-eval")
    assert trained.returncode == 0, trained.stderr[-3000:]
    exported = _mosel(env, "model", "export", "--pack", "toy_pack:ToyPack", "--model", MODEL,
                      "--model-repository", str(repository), "--with-data")
    assert exported.returncode == 0, exported.stderr[-3000:]
    return {"home": home, "repository": repository, "env": env, "version": repository / MODEL / "1"}


def test_export_writes_a_version_with_manifest_artifacts_and_data(workspace):
    version = workspace["version"]
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["name"] == MODEL and [m["name"] for m in manifest["modalities"]] == ["tone", "glyph"]
    assert manifest["source"]["pack"] == MODEL
    for relative in [m["encoder"] for m in manifest["modalities"]] + [manifest["fusion_head"]]:
        assert (version / relative).is_file() and relative in manifest["artifacts"]
    assert (version / "data" / "test.npz").is_file()


def test_check_passes(workspace):
    result = _mosel(workspace["env"], "model", "check", str(workspace["version"]))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "3 configurations" in result.stdout


def test_eval_writes_an_accuracy_profile_with_intervals(workspace):
    version = workspace["version"]
    result = _mosel(workspace["env"], "model", "eval", str(version), "--data", str(version / "data" / "test.npz"))
    assert result.returncode == 0, result.stderr
    profile = json.loads((version / "accuracy.json").read_text())
    rows = {r["configuration"]: r for r in profile["configurations"]}
    assert set(rows) == {"tone+glyph", "tone", "glyph"}
    assert profile["checkpoint_sha256"] == open_version(version).digest
    for r in rows.values():
        assert r["n"] == 400 and r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    # the synthetic task makes "tone" the strong modality and "glyph" the weak one
    assert rows["tone+glyph"]["accuracy"] >= rows["tone"]["accuracy"] - 0.03 > rows["glyph"]["accuracy"]


def test_the_exported_version_predicts_what_the_pack_predicts(workspace):
    """Same logits from the artifacts as from the trained pack's own modules."""
    import torch

    sys.path.insert(0, str(workspace["version"].parents[2] / "code"))
    try:
        from mosel.models.checkpoint import load_model
        from mosel.models.registry import use_packs

        use_packs(["toy_pack:ToyPack"])
        pack, encoders, head = load_model(MODEL, workspace["home"])
    finally:
        sys.path.pop(0)
    exported = open_version(workspace["version"])
    data = load_labelled(workspace["version"] / "data" / "test.npz", exported.pack)
    from mosel.lifecycle.model_eval import embed

    with torch.inference_mode():
        eager = embed(pack, encoders, data, batch_size=32)
        served = embed(exported.pack, {m: exported.encoder(m) for m in pack.modality_names}, data, batch_size=32)
        torch.testing.assert_close(served, eager, rtol=1e-4, atol=1e-5)
        present = torch.ones(len(data), 2, dtype=torch.bool)
        assert torch.equal(exported.fusion_head()(eager, present).argmax(1), head(eager, present).argmax(1))


@pytest.fixture(scope="module")
def stack(workspace, tmp_path_factory):
    """Services started from the repository only: neither PYTHONPATH nor --pack names the code."""
    eval_done = workspace["version"] / "accuracy.json"
    if not eval_done.is_file():
        test_eval_writes_an_accuracy_profile_with_intervals(workspace)
    s = Stack(home=tmp_path_factory.mktemp("own-model-serving"), model=MODEL,
              model_repository=str(workspace["repository"]))
    bring_up(s, progress=False, say=lambda *_: None)
    yield s
    codes = s.stop()
    assert all(c == 0 for c in codes.values()), f"a service did not exit cleanly: {codes}"


@pytest.fixture(scope="module")
def samples(workspace):
    exported = open_version(workspace["version"])
    data = load_labelled(workspace["version"] / "data" / "test.npz", exported.pack)
    return [({m: data.items(m)[i] for m in exported.pack.modality_names}, int(data.labels[i])) for i in range(64)]


def test_profile_and_solve_commands_work_on_the_served_model(stack, workspace):
    env = {**workspace["env"], "PYTHONPATH": ""}  # the repository alone: no pack code
    store = stack.endpoint("profile_store")
    profiled = _mosel(env, "profile", "--model", MODEL, "--model-repository", str(workspace["repository"]),
                      "--store", store, "--repeats", "2", "--warmup", "1", "--max-batch", "8", "--no-progress")
    assert profiled.returncode == 0, profiled.stdout[-2000:] + profiled.stderr[-2000:]
    solved = _mosel(env, "solve", "--model", MODEL, "--store", store)
    assert solved.returncode == 0, solved.stdout[-2000:] + solved.stderr[-2000:]
    with ProfileStoreClient(store) as client:
        digest = open_version(workspace["version"]).digest
        assert client.get_latency_profile(MODEL).checkpoint_sha256 == digest
        assert client.get_accuracy_profile(MODEL).checkpoint_sha256 == digest


def test_served_over_grpc_with_the_exported_accuracy(stack, samples):
    with MoselClient(stack.endpoint("selection"), timeout_s=30) as client:
        client.wait_ready()
        meta = client.metadata(MODEL)
        assert [m.name for m in meta.modalities] == ["tone", "glyph"] and meta.model_version == "1"
        correct = 0
        for inputs, label in samples:
            r = client.infer(MODEL, inputs, budget_ms=5000)
            assert r.configuration == "tone+glyph" and not r.degraded
            correct += r.label == label
        assert correct / len(samples) > 0.6


def _full_and_cheapest_ms(store_address: str, size: int) -> tuple[float, float]:
    from mosel.protocol.records import cost_from_latency_profile

    with ProfileStoreClient(store_address) as store:
        cost = cost_from_latency_profile(store.get_latency_profile(MODEL))
    return float(cost.latency({"tone+glyph": size})), float(cost.latency({"glyph": size}))


def test_mosel_policy_drops_the_heavy_modality_when_deadlines_press(stack, samples):
    """Bursts of concurrent jobs whose budgets cannot all be met with both modalities: the
    mosel policy serves some of them from the glyph alone (degraded), on the same services."""
    address = stack.start_selection("selection_mosel", "mosel")
    full_ms, cheap_ms = _full_and_cheapest_ms(stack.endpoint("profile_store"), 8)
    assert full_ms > 2 * cheap_ms, (full_ms, cheap_ms)  # the test pack's tone encoder is the heavy one
    jobs = [[samples[(j * 8 + i) % len(samples)][0] for i in range(8)] for j in range(24)]
    budget_ms = 40.0 + 3 * full_ms
    outcomes = []
    with MoselClient(address, timeout_s=60) as client, ThreadPoolExecutor(max_workers=24) as pool:
        client.wait_ready()

        def send(job):
            try:
                return client.infer_job(MODEL, job, budget_ms=budget_ms, min_accuracy=0.0)
            except grpc.RpcError as exc:
                return exc.code()

        for _ in range(3):
            outcomes += list(pool.map(send, jobs))
    answered = [o for o in outcomes if not isinstance(o, grpc.StatusCode)]
    refused = [o for o in outcomes if isinstance(o, grpc.StatusCode)]
    assert set(refused) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}, refused
    assert answered, refused
    degraded = [r for r in answered if r.degraded]
    assert degraded, f"no job degraded among {len(answered)} answered (full {full_ms:.1f} ms at b=8)"
    dropped = [r for job in degraded for r in job.results if r.degraded]
    assert all(len(r.modalities_used) == 1 for r in dropped)
    assert any(r.modalities_used == ["glyph"] for r in dropped)  # the heavy encoder's work was saved
    assert np.mean([r.expected_accuracy for r in answered]) > 0


def test_a_new_version_is_served_without_restarting_anything(stack, workspace, samples):
    """Version 2 (the same weights as .pt2 programs: other artifacts, so other weights digest)
    is exported, evaluated and published; the running selection service swaps it in and the
    running encoders load it when the first round asks for it."""
    env, repository = workspace["env"], workspace["repository"]
    exported = _mosel(env, "model", "export", "--pack", "toy_pack:ToyPack", "--model", MODEL,
                      "--model-repository", str(repository), "--format", "pt2")
    assert exported.returncode == 0, exported.stderr[-3000:]
    v2 = repository / MODEL / "2"
    assert (v2 / "encoders" / "tone.pt2").is_file()
    evaluated = _mosel(env, "model", "eval", str(v2), "--data", str(workspace["version"] / "data" / "test.npz"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    digest = open_version(v2).digest
    store = stack.endpoint("profile_store")
    profiled = _mosel({**env, "PYTHONPATH": ""}, "profile", "--model", MODEL, "--model-repository", str(repository),
                      "--store", store, "--repeats", "2", "--warmup", "1", "--max-batch", "8", "--no-progress")
    assert profiled.returncode == 0, profiled.stdout[-2000:] + profiled.stderr[-2000:]
    with MoselClient(stack.endpoint("selection"), timeout_s=30) as client:
        for _ in range(3000):  # the swap follows the store's watch stream; poll for it, no time limit on it
            meta = client.metadata(MODEL)
            if meta.weights_sha256 == digest:
                break
            time.sleep(0.1)
        assert meta.model_version == "2" and meta.weights_sha256 == digest
        assert meta.accuracy_profile_version >= 2  # v2's own accuracy, not v1's
        inputs, label = samples[0]
        r = client.infer(MODEL, inputs, budget_ms=30000)
        assert r.configuration == "tone+glyph" and r.expected_accuracy > 0
    infos = stack_encoder_digests(stack)
    assert set(infos.values()) == {digest}, infos


def stack_encoder_digests(stack) -> dict[str, str]:
    from mosel.protocol.v1 import encoder_pb2, encoder_pb2_grpc
    from mosel.server.channels import make_channel

    out = {}
    for name in ("encoder_tone", "encoder_glyph"):
        with make_channel(stack.endpoint(name)) as channel:
            info = encoder_pb2_grpc.EncoderServiceStub(channel).Info(encoder_pb2.EncoderInfoRequest(), timeout=10)
        out[name] = info.checkpoint_sha256
    return out


def test_a_broken_model_stops_no_one(stack, workspace, tmp_path):
    """A repository version with a missing artifact: its encoder exits 2 naming the file; a
    selection service asked for it and for a valid model serves the valid one."""
    from dataclasses import replace

    from mosel.encoder.settings import EncoderSettings
    from mosel.engine.settings import SelectionSettings
    from mosel.launch.stack import launch, terminate, wait_ready

    repository = workspace["repository"]
    ghost = repository / "ghost" / "1"
    shutil.copytree(workspace["version"], ghost)
    manifest = json.loads((ghost / "manifest.json").read_text())
    manifest["name"] = "ghost"
    (ghost / "manifest.json").write_text(json.dumps(manifest))
    (ghost / manifest["modalities"][0]["encoder"]).unlink()
    try:
        encoder = launch("encoder_ghost", EncoderSettings(model="ghost", modality="tone",
                                                          model_repository=str(repository)), tmp_path)
        assert encoder.proc.wait(timeout=300) == 2
        assert str(ghost / manifest["modalities"][0]["encoder"]) in encoder.log_tail()
        encoders = tuple(f"{MODEL}/{m}={stack.endpoint('encoder_' + m)}" for m in ("tone", "glyph"))
        settings = replace(SelectionSettings(), profile_store=stack.endpoint("profile_store"), models=(MODEL, "ghost"),
                           encoders=encoders + ("ghost/tone=127.0.0.1:1", "ghost/glyph=127.0.0.1:1"),
                           model_repository=str(repository))
        selection = launch("selection_ghost", settings, tmp_path)
        try:
            wait_ready([selection], 300)
            with MoselClient(selection.address, timeout_s=30) as client:
                assert client.infer(MODEL, dict(workspace_sample(workspace)), budget_ms=5000).label >= 0
                with pytest.raises(grpc.RpcError) as err:
                    client.metadata("ghost")
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert "model ghost is not served" in selection.log_tail(200)
        finally:
            assert terminate(selection.proc) == 0
    finally:
        shutil.rmtree(ghost.parent)


def workspace_sample(workspace) -> dict:
    exported = open_version(workspace["version"])
    data = load_labelled(workspace["version"] / "data" / "test.npz", exported.pack)
    return {m: data.items(m)[0] for m in exported.pack.modality_names}
