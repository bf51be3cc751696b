"""Model-pack interface: registry, packing collate, fusion head, validation, checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mosel.cli.main import main as cli_main
from mosel.models.items import pack_items
from mosel.lifecycle.evaluate import format_table, wilson_interval
from mosel.models.pack import InvalidInput
from mosel.models.registry import get_pack, pack_names
from mosel.models.pack import TensorSpec
from mosel.models.checkpoint import (CheckpointError, load_accuracy, load_encoder, load_fusion_head, load_manifest,
                                     load_model, load_pack_from_manifest, model_dir, save_model, sha256_file)

MODEL = "av-digits"


# ---------------------------------------------------------------- registry


def test_registry_lists_and_builds_packs():
    assert MODEL in pack_names()
    pack = get_pack(MODEL, preset="tiny")
    assert pack.name == MODEL
    assert pack.modality_names == ("audio", "image", "video")
    assert len(pack.configurations()) == 7 and pack.configurations()[0] == "audio+image+video"
    json.dumps(pack.describe())  # JSON-able


def test_registry_unknown_name_lists_known_packs():
    with pytest.raises(KeyError) as err:
        get_pack("no-such-model")
    assert "no-such-model" in str(err.value) and MODEL in str(err.value)


def test_registry_rejects_bad_size_knobs():
    with pytest.raises(TypeError):
        get_pack(MODEL, colour="blue")
    with pytest.raises(ValueError, match="preset"):
        get_pack(MODEL, preset="gigantic")
    with pytest.raises(ValueError, match="width"):
        get_pack(MODEL, width=0)


def test_size_knobs_are_recorded():
    pack = get_pack(MODEL, preset="tiny", width=6, frames=4)
    assert pack.size == {"preset": "tiny", "width": 6, "depth": 1, "embed_dim": 32, "frames": 4}
    assert get_pack(MODEL, **pack.size).size == pack.size


# ---------------------------------------------------------------- packing collate


def test_pack_items_normalises_then_pads_with_zeros():
    spec = TensorSpec("uint8", (-1, 2), sequence=True, mean=10.0, std=2.0)
    items = [np.array([[10, 12]], np.uint8), np.array([[14, 10], [12, 12], [8, 6]], np.uint8)]
    x, lengths = pack_items(items, spec)
    assert x.dtype == torch.float32 and lengths.dtype == torch.int64
    assert lengths.tolist() == [1, 3]
    assert x.shape == (2, 3, 2)
    assert x[0].tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]  # padding is 0 after normalisation
    assert x[1].tolist() == [[2.0, 0.0], [1.0, 1.0], [-1.0, -2.0]]


def test_pack_items_non_sequence_is_one_step_and_stacked_path_matches():
    spec = TensorSpec("uint8", (2, 3), mean=1.0, std=4.0)
    arr = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    x1, l1 = pack_items(list(arr), spec)
    x2, l2 = pack_items(arr, spec)
    assert x1.shape == (4, 1, 6) and l1.tolist() == [1, 1, 1, 1]
    assert torch.equal(x1, x2) and torch.equal(l1, l2)
    assert torch.allclose(x1[1, 0], (torch.arange(6, 12, dtype=torch.float32) - 1) / 4)


# ---------------------------------------------------------------- fusion head


def _all_masks(m: int) -> list[list[bool]]:
    return [[bool(c >> i & 1) for i in range(m)] for c in range(1, 2**m)]


def test_fusion_head_accepts_every_non_empty_subset():
    pack = get_pack(MODEL, preset="tiny")
    head = pack.build_fusion_head().eval()
    masks = _all_masks(3)
    assert len(masks) == 7
    emb = torch.randn(len(masks), 3, pack.embed_dim)
    present = torch.tensor(masks)
    logits = head(emb, present)
    assert logits.shape == (7, 10) and torch.isfinite(logits).all()


def test_fusion_head_never_reads_absent_embeddings():
    pack = get_pack(MODEL, preset="tiny")
    head = pack.build_fusion_head().eval()
    emb = torch.randn(2, 3, pack.embed_dim)
    present = torch.tensor([[True, False, True], [False, True, False]])
    poisoned = emb.clone()
    poisoned[~present] = float("nan")
    assert torch.equal(head(emb, present), head(poisoned, present))


def test_fusion_head_rejects_empty_rows_and_bad_shapes():
    pack = get_pack(MODEL, preset="tiny")
    head = pack.build_fusion_head()
    emb = torch.randn(3, 3, pack.embed_dim)
    with pytest.raises(ValueError, match="no present modality"):
        head(emb, torch.tensor([[True, False, False], [False, False, False], [True, True, True]]))
    with pytest.raises(ValueError):
        head(torch.randn(3, 2, pack.embed_dim), torch.ones(3, 2, dtype=torch.bool))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "modality,item,needle",
    [
        ("image", np.zeros((28, 28), np.float32), "dtype"),
        ("image", np.zeros((1, 28, 28), np.uint8), "rank"),
        ("image", np.zeros((20, 20), np.uint8), "shape"),
        ("video", np.zeros((8, 28, 27), np.uint8), "shape"),
        ("video", np.zeros((0, 28, 28), np.uint8), ">= 1"),
        ("video", np.zeros((65, 28, 28), np.uint8), "at most"),
        ("audio", np.zeros((10, 32), np.float64), "dtype"),
        ("audio", np.zeros((10, 31), np.float32), "shape"),
        ("audio", np.zeros((10,), np.float32), "rank"),
    ],
)
def test_validate_item_rejects_with_field_name(modality, item, needle):
    pack = get_pack(MODEL, preset="tiny")
    with pytest.raises(InvalidInput) as err:
        pack.validate_item(modality, item, field="inputs[0].tensor")
    assert err.value.field == "inputs[0].tensor"
    assert str(err.value).startswith("inputs[0].tensor:") and needle in str(err.value)


def test_validate_item_accepts_spec_items_and_rejects_unknown_modality():
    pack = get_pack(MODEL, preset="tiny")
    pack.validate_item("audio", np.zeros((7, 32), np.float32))
    pack.validate_item("image", np.zeros((28, 28), np.uint8))
    pack.validate_item("video", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(InvalidInput) as err:
        pack.validate_item("smell", np.zeros(3, np.uint8))
    assert err.value.field == "modality"


# ---------------------------------------------------------------- statistics and tables


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)


def test_format_table_has_one_line_per_configuration():
    rows = [{"configuration": c, "n": 10, "accuracy": 0.5, "ci_low": 0.2, "ci_high": 0.8} for c in ("a+b", "a", "b")]
    lines = format_table(rows).splitlines()
    assert len(lines) == 5 and "95% CI" in lines[0] and "[0.200, 0.800]" in lines[2]


# ---------------------------------------------------------------- checkpoints


@pytest.fixture
def model_copy(tiny_model_home, tmp_path):
    """A private copy of the trained tiny model, safe to corrupt."""
    shutil.copytree(model_dir(MODEL, tiny_model_home), model_dir(MODEL, tmp_path))
    return tmp_path


def test_manifest_records_what_reproduces_the_model(tiny_model_home):
    manifest = load_manifest(MODEL, home=tiny_model_home)
    for key in ("name", "size", "modalities", "configurations", "data_split", "seed", "code_version",
                "hyperparameters", "checkpoint", "train_time_s", "created_at"):
        assert key in manifest, key
    assert manifest["size"]["preset"] == "tiny" and manifest["seed"] == 0
    assert manifest["code_version"]["mosel"] and manifest["code_version"]["git_commit"]
    ckpt = model_dir(MODEL, tiny_model_home) / "checkpoint.pt"
    assert manifest["checkpoint"]["sha256"] == sha256_file(ckpt)
    pack = load_pack_from_manifest(manifest)
    assert pack.size == manifest["size"] and pack.describe()["modalities"] == manifest["modalities"]


def test_loaders_return_eval_mode_modules(tiny_model_home):
    pack, enc = load_encoder(MODEL, "video", home=tiny_model_home)
    assert not enc.training and pack.size["preset"] == "tiny"
    _, head = load_fusion_head(MODEL, home=tiny_model_home)
    assert not head.training
    _, encoders, _ = load_model(MODEL, home=tiny_model_home)
    for a, b in zip(encoders["video"].state_dict().values(), enc.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(KeyError):
        load_encoder(MODEL, "smell", home=tiny_model_home)


def test_accuracy_profile_is_written_beside_the_checkpoint(tiny_model_home):
    acc = load_accuracy(MODEL, home=tiny_model_home)
    assert [r["configuration"] for r in acc["configurations"]] == get_pack(MODEL).configurations()
    assert acc["checkpoint_sha256"] == load_manifest(MODEL, home=tiny_model_home)["checkpoint"]["sha256"]


def test_missing_model_says_how_to_create_it(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_encoder(MODEL, "audio", home=tmp_path)
    assert "mosel train --model av-digits" in str(err.value) and str(tmp_path) in str(err.value)


def test_corrupt_checkpoint_bytes(model_copy):
    ckpt = model_dir(MODEL, model_copy) / "checkpoint.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_fusion_head(MODEL, home=model_copy)
    assert "sha256" in str(err.value) and "mosel train --model av-digits" in str(err.value)
    assert str(ckpt) in str(err.value)


def _rewrite_checkpoint(home, payload: bytes) -> None:
    folder = model_dir(MODEL, home)
    (folder / "checkpoint.pt").write_bytes(payload)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checkpoint"]["sha256"] = sha256_file(folder / "checkpoint.pt")  # checksum passes, content is bad
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_unreadable_checkpoint(model_copy):
    _rewrite_checkpoint(model_copy, b"this is not a torch file")
    with pytest.raises(CheckpointError, match="unreadable.*mosel train"):
        load_encoder(MODEL, "audio", home=model_copy)


def test_checkpoint_with_missing_keys(model_copy, tmp_path):
    folder = model_dir(MODEL, model_copy)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    del state["encoders"]["image"]
    state["encoders"]["audio"].pop(next(iter(state["encoders"]["audio"])))
    scratch = tmp_path / "c.pt"
    torch.save(state, scratch)
    _rewrite_checkpoint(model_copy, scratch.read_bytes())
    with pytest.raises(CheckpointError, match="image.*mosel train"):
        load_encoder(MODEL, "audio", home=model_copy)
    state["encoders"]["image"] = {}
    torch.save(state, scratch)
    _rewrite_checkpoint(model_copy, scratch.read_bytes())
    with pytest.raises(CheckpointError, match="audio encoder weights do not fit.*mosel train"):
        load_encoder(MODEL, "audio", home=model_copy)


def test_corrupt_manifest(model_copy):
    (model_dir(MODEL, model_copy) / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable.*mosel train"):
        load_manifest(MODEL, home=model_copy)


def test_changed_specs_are_detected(model_copy):
    folder = model_dir(MODEL, model_copy)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["modalities"][0]["mean"] += 1.0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="modality specs"):
        load_encoder(MODEL, "audio", home=model_copy)


def test_save_model_roundtrip_and_stale_accuracy_removed(model_copy):
    pack, encoders, head = load_model(MODEL, home=model_copy)
    assert (model_dir(MODEL, model_copy) / "accuracy.json").exists()
    with torch.no_grad():
        next(head.parameters()).add_(1.0)
    folder = save_model(pack, encoders, head, seed=7, hyperparameters={"epochs": 0}, data_split={"x": 1},
                        train_time_s=0.0, home=model_copy)
    assert not (folder / "accuracy.json").exists()
    _, head2 = load_fusion_head(MODEL, home=model_copy)
    assert torch.equal(next(head2.parameters()), next(head.parameters()))
    assert load_manifest(MODEL, home=model_copy)["seed"] == 7
    with pytest.raises(CheckpointError, match="mosel eval"):
        load_accuracy(MODEL, home=model_copy)


def test_eval_command_prints_seven_rows(tiny_model_home, capsys):
    assert cli_main(["eval", "--model", MODEL, "--home", str(tiny_model_home)]) == 0
    out = capsys.readouterr().out
    for config in get_pack(MODEL).configurations():
        assert any(line.startswith(config + " ") for line in out.splitlines()), config


def test_eval_command_without_model_fails_cleanly(tmp_path, capsys):
    assert cli_main(["eval", "--model", MODEL, "--home", str(tmp_path)]) == 1
    assert "mosel train --model av-digits" in capsys.readouterr().err
