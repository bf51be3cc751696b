"""The worked example examples/sensor-digits, loaded from its folder (not installed): found
through `--pack`, trained tiny for one epoch by `mosel train`, every configuration evaluated;
its encoders and fusion head honour the pack contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from mosel.cli.main import main as cli_main
from mosel.config import repo_root
from mosel.models.items import pack_items
from mosel.models.labelled import LabelledSet
from mosel.models.pack import InvalidInput

EXAMPLE = repo_root() / "examples" / "sensor-digits"
SPEC = "sensor_digits.pack:SensorDigitsPack"
MODEL = "sensor-digits"


@pytest.fixture(scope="module")
def on_path():
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLE))


@pytest.fixture(scope="module")
def pack(on_path):
    from mosel.models.registry import get_pack, register_pack_path

    assert register_pack_path(SPEC) == MODEL
    return get_pack(MODEL, preset="tiny")


@pytest.fixture(scope="module")
def trained(on_path, tmp_path_factory):
    """`mosel train --pack ...` for one tiny epoch into a fresh home (evaluation included)."""
    home = tmp_path_factory.mktemp("sensor_digits_home")
    code = cli_main(["train", "--pack", SPEC, "--model", MODEL, "--size", "tiny", "--epochs", "1", "--seed", "0",
                     "--home", str(home), "--no-progress"])
    assert code == 0
    return home


def test_the_package_declares_its_entry_point():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points."mosel.models"]' in text and f'{MODEL} = "{SPEC}"' in text
    assert '"mosel-serving"' in text


def test_every_configuration_is_evaluated(trained, pack):
    from mosel.models.checkpoint import load_accuracy, load_manifest

    rows = {r["configuration"]: r for r in load_accuracy(MODEL, home=trained)["configurations"]}
    assert list(rows) == pack.configurations() and len(rows) == 7
    for config, r in rows.items():
        assert r["n"] == 300 and r["ci_low"] > 0.1, (config, r)  # above chance after one tiny epoch
    assert rows["spectrogram+waveform+digit"]["accuracy"] > 0.4
    manifest = load_manifest(MODEL, home=trained)
    assert manifest["data_split"]["test_seed"] and manifest["hyperparameters"]["epochs"] == 1
    assert "bucketed by waveform length" in manifest["hyperparameters"]["batching"]


def test_mosel_eval_reproduces_the_profile(trained, capsys):
    assert cli_main(["eval", "--pack", SPEC, "--model", MODEL, "--home", str(trained), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    from mosel.models.checkpoint import load_accuracy

    stored = load_accuracy(MODEL, home=trained)["configurations"]
    assert [(r["configuration"], r["correct"]) for r in rows] == [(r["configuration"], r["correct"]) for r in stored]


def test_fusion_head_takes_every_subset_and_never_reads_absent_rows(pack):
    head = pack.build_fusion_head().eval()
    m = len(pack.modalities)
    present = torch.tensor([[bool(c >> i & 1) for i in range(m)] for c in range(1, 2**m)])
    emb = torch.randn(len(present), m, pack.embed_dim)
    poisoned = emb.clone()
    poisoned[~present] = float("nan")
    with torch.no_grad():
        logits = head(emb, present)
        assert logits.shape == (2**m - 1, pack.num_classes) and torch.isfinite(logits).all()
        assert torch.equal(head(poisoned, present), logits)
    with pytest.raises(ValueError, match="no present modality"):
        head(emb[:2], torch.tensor([[True, False, False], [False, False, False]]))


def test_dataset_items_are_wire_ready_and_encoders_exact_on_padded_batches(pack):
    test = pack.dataset("test")
    assert isinstance(test, LabelledSet) and len(test) == 300 and set(test.labels.tolist()) == set(range(10))
    for m in pack.modality_names:
        for item in list(test.items(m))[:20]:
            pack.validate_item(m, np.ascontiguousarray(item))
    torch.manual_seed(0)
    for m in pack.modality_names:
        enc = pack.build_encoder(m).eval()
        spec = pack.modality(m).spec
        items = list(test.items(m))[:6]
        with torch.no_grad():
            batched = enc(*pack_items(items, spec))
            alone = torch.cat([enc(*pack_items([it], spec)) for it in items])
        assert batched.shape == (6, pack.embed_dim)
        torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


def test_test_samples_come_from_the_base_class(pack):
    samples = pack.test_samples(limit=12, seed=1)
    again = pack.test_samples(limit=12, seed=1)
    assert len(samples) == 12 and set(samples[0][0]) == set(pack.modality_names)
    assert all(a[1] == b[1] and np.array_equal(a[0]["waveform"], b[0]["waveform"]) for a, b in zip(samples, again))


def test_preprocess_from_a_wav_file(pack, tmp_path):
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(4000) * 3000).astype(np.int16)
    path = tmp_path / "clip.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(samples.tobytes())
    spec = pack.preprocess("spectrogram", path)
    frames = pack.preprocess("waveform", str(path))
    assert spec.shape == (32, 32) and spec.dtype == np.float32
    assert frames.dtype == np.float16 and frames.shape == (50, 20)  # 0.5 s in 10 ms frames
    assert pack.preprocess("digit", np.zeros((28, 28), np.uint8)).shape == (20, 20)
    with pytest.raises(InvalidInput, match="^digit: "):
        pack.preprocess("digit", np.zeros((20, 20), np.float32))
    with pytest.raises(InvalidInput, match="^waveform: .*at most"):
        pack.preprocess("waveform", np.zeros(9 * 8000, np.int16))


def test_training_script_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(repo_root())])}
    out = subprocess.run([sys.executable, "-m", "sensor_digits.train", "--size", "tiny", "--epochs", "1",
                          "--home", str(tmp_path), "--no-progress", "--no-eval"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "models" / MODEL / "checkpoint.pt").is_file() and "saved to" in out.stdout
