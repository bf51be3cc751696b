"""Broken repositories: each problem gets an error naming the file and the manifest field,
from `parse_manifest`, `mosel model check` and the labelled-set reader alike."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from mosel.config import repo_root
from mosel.lifecycle.check import check_version
from mosel.models.pack import TensorSpec
from mosel.repository import layout
from mosel.repository.artifacts import export_encoder, export_fusion_head
from mosel.repository.data import load_labelled
from mosel.repository.manifest import ManifestError, parse_manifest
from mosel.repository.source import open_model, open_version

EMBED, CLASSES = 4, 3
SEQ = TensorSpec("float32", (-1, 3), sequence=True, max_steps=10)
PIC = TensorSpec("uint8", (2, 2))


class MeanEncoder(nn.Module):
    def __init__(self, row: int):
        super().__init__()
        self.proj = nn.Linear(row, EMBED)

    def forward(self, x, lengths):
        mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.dtype)[..., None]
        return self.proj((x * mask).sum(1) / mask.sum(1))


class MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(EMBED, CLASSES)

    def forward(self, emb, present):
        weights = present.to(emb.dtype)[..., None]
        return self.out((emb * weights).sum(1) / weights.sum(1))


class OnlyFirstHead(nn.Module):
    """Reads modality 0 whether it is present or not: wrong for the subset without it."""

    def forward(self, emb, present):
        if not bool(present[:, 0].all()):
            raise ValueError("modality 0 missing")
        return emb[:, 0, :3]


def _manifest(**changes):
    doc = {"format": "mosel-model/1", "name": "tiny", "labels": ["a", "b", "c"], "embed_dim": EMBED, "max_batch": 4,
           "modalities": [{"name": "seq", "dtype": "float32", "shape": [-1, 3], "sequence": True, "max_steps": 10,
                           "encoder": "seq.pt"},
                          {"name": "pic", "dtype": "uint8", "shape": [2, 2], "mean": 100.0, "std": 50.0,
                           "encoder": "pic.pt"}],
           "fusion_head": "head.pt"}
    doc.update(changes)
    return doc


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid version <repo>/tiny/1 made from small modules."""
    torch.manual_seed(0)
    repo = tmp_path_factory.mktemp("repo")
    version = repo / "tiny" / "1"
    version.mkdir(parents=True)
    export_encoder(MeanEncoder(3), SEQ, version / "seq.pt", max_batch=4, format="torchscript")
    export_encoder(MeanEncoder(4), PIC, version / "pic.pt", max_batch=4, format="torchscript")
    export_fusion_head(MeanHead(), 2, EMBED, version / "head.pt", max_batch=4, format="torchscript")
    (version / "manifest.json").write_text(json.dumps(_manifest()))
    return version


def _copy(good, tmp_path, name="tiny", **changes):
    version = tmp_path / name / "1"
    shutil.copytree(good, version)
    if changes:
        (version / "manifest.json").write_text(json.dumps(_manifest(name=name, **changes)))
    return version


def test_the_good_version_checks_clean(good):
    version, problems = check_version(good)
    assert problems == [] and version.modality_names == ("seq", "pic") and version.max_batch == 4


@pytest.mark.parametrize("change, field, words", [
    ({"modalites": []}, "modalites", "did you mean 'modalities'"),
    ({"format": "v2"}, "format", "mosel-model/1"),
    ({"labels": ["a"]}, "labels", "at least two"),
    ({"embed_dim": 0}, "embed_dim", ">= 1"),
    ({"fusion_head": "../head.pt"}, "fusion_head", "inside the version directory"),
    ({"fusion_head": "head.bin"}, "fusion_head", ".pt2, .pt, .onnx"),
    ({"modalities": [{"name": "seq", "dtype": "int64", "shape": [3], "encoder": "seq.pt"}]},
     "modalities[0].dtype", "uint8, float16, float32"),
    ({"modalities": [{"name": "seq", "dtype": "float32", "shape": [3, -1], "encoder": "seq.pt"}]},
     "modalities[0].shape", "only the sequence axis"),
    ({"modalities": [{"name": "seq", "dtype": "float32", "shape": [-1, 3], "sequence": True, "encoder": "seq.pt"}]},
     "modalities[0].max_steps", "max_steps >= 1"),
    ({"modalities": [{"name": "a+b", "dtype": "float32", "shape": [3], "encoder": "seq.pt"}]},
     "modalities[0].name", "no '+'"),
    ({"modalities": [{"name": "seq", "dtype": "float32", "shape": [3], "encoder": "seq.pt", "std": 0}]},
     "modalities[0].std", "> 0"),
    ({"modalities": [{"name": "seq", "dtype": "float32", "shape": [3], "encodr": "seq.pt"}]},
     "modalities[0].encodr", "did you mean 'encoder'"),
])
def test_manifest_mistakes_name_the_field(good, tmp_path, change, field, words):
    version = _copy(good, tmp_path, **change)
    with pytest.raises(ManifestError) as err:
        parse_manifest(version)
    assert err.value.field == field and words in err.value.message
    assert str(version / "manifest.json") in str(err.value)


def test_unreadable_or_misnamed_manifest(good, tmp_path):
    version = _copy(good, tmp_path)
    (version / "manifest.json").write_text("{\"format\": ")
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest(version)
    other = _copy(good, tmp_path, name="other")
    (other / "manifest.json").write_text(json.dumps(_manifest()))  # says "tiny" in directory "other"
    with pytest.raises(ManifestError) as err:
        parse_manifest(other)
    assert err.value.field == "name" and "differs from the model directory" in err.value.message


def test_missing_artifact_is_named(good, tmp_path):
    version = _copy(good, tmp_path)
    (version / "pic.pt").unlink()
    _, problems = check_version(version)
    assert [(p.field, p.file) for p in problems] == [("modalities[1].encoder", str(version / "pic.pt"))]


def test_an_artifact_that_is_not_a_model(good, tmp_path):
    version = _copy(good, tmp_path)
    (version / "seq.pt").write_bytes(b"definitely not a model")
    _, problems = check_version(version)
    assert len(problems) == 1 and problems[0].field == "modalities[0].encoder"
    assert problems[0].file == str(version / "seq.pt")


def test_shape_mismatch_between_manifest_and_encoder(good, tmp_path):
    # the encoder was built for 3 values per step; the manifest now promises 5
    version = _copy(good, tmp_path, modalities=[
        {"name": "seq", "dtype": "float32", "shape": [-1, 5], "sequence": True, "max_steps": 10, "encoder": "seq.pt"},
        {"name": "pic", "dtype": "uint8", "shape": [2, 2], "encoder": "pic.pt"}])
    _, problems = check_version(version)
    assert problems and {p.field for p in problems} == {"modalities[0].encoder"}
    assert "fails on a batch 1" in problems[0].message


def test_embedding_width_mismatch(good, tmp_path):
    version = _copy(good, tmp_path, embed_dim=EMBED + 1)
    _, problems = check_version(version)
    fields = {p.field for p in problems}
    assert "embed_dim" in fields  # the encoders return 4 wide, the manifest says 5
    assert any("returns shape [1, 4]" in p.message for p in problems)


def test_fusion_head_that_fails_on_a_subset(good, tmp_path):
    version = _copy(good, tmp_path)
    torch.jit.save(torch.jit.script(OnlyFirstHead()), str(version / "head.pt"))
    _, problems = check_version(version)
    assert problems and all(p.field == "fusion_head" for p in problems)
    assert all("pic" in p.message and "seq" not in p.message.split("for modalities ")[1].split(" at")[0]
               for p in problems)


def test_check_command_exits_nonzero_and_lists_every_problem(good, tmp_path):
    version = _copy(good, tmp_path)
    (version / "pic.pt").unlink()
    (version / "seq.pt").write_bytes(b"junk")
    result = subprocess.run([sys.executable, "-m", "mosel.cli", "model", "check", str(version)], cwd=str(repo_root()),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "modalities[0].encoder" in result.stderr and "modalities[1].encoder" in result.stderr
    assert "2 problem(s)" in result.stderr


def test_versions_newest_first_and_pinned(good, tmp_path):
    _copy(good, tmp_path)
    shutil.copytree(tmp_path / "tiny" / "1", tmp_path / "tiny" / "3")
    (tmp_path / "tiny" / "2").mkdir()  # no manifest: not a version
    assert layout.versions(tmp_path, "tiny") == [1, 3]
    assert open_model("tiny", repository=tmp_path).version.version == 3
    assert open_model("tiny", repository=tmp_path, version=1).version.version == 1
    with pytest.raises(ManifestError, match="versions: 1, 3"):
        open_model("tiny", repository=tmp_path, version=2)
    assert open_version(tmp_path / "tiny" / "1").digest == open_version(tmp_path / "tiny" / "3").digest


def test_changed_artifact_is_refused_when_the_manifest_records_its_sha(good, tmp_path):
    from mosel.models.checkpoint import sha256_file
    from mosel.repository.artifacts import ArtifactError

    version = _copy(good, tmp_path, artifacts={"seq.pt": sha256_file(good / "seq.pt")})
    open_version(version).encoder("seq")  # as recorded: loads
    shutil.copy(good / "pic.pt", version / "seq.pt")
    with pytest.raises(ArtifactError, match="sha256 differs"):
        open_version(version).encoder("seq")


# ------------------------------------------------------------------ the labelled set (.npz)


def _data(path, n=6, **override):
    arrays = {"labels": np.arange(n) % CLASSES, "seq": np.zeros((n, 7, 3), np.float32),
              "seq.lengths": np.full(n, 5), "pic": np.zeros((n, 2, 2), np.uint8)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_labelled_set_round_trip(good, tmp_path):
    data = load_labelled(_data(tmp_path / "d.npz"), open_version(good).pack)
    assert len(data) == 6 and data.items("seq")[0].shape == (5, 3) and data.items("pic")[0].shape == (2, 2)


@pytest.mark.parametrize("override, field", [
    ({"labels": None}, "labels"),
    ({"labels": np.array([0, 1, 2, 3, 0, 1])}, "labels"),
    ({"pic": None}, "pic"),
    ({"pic": np.zeros((6, 2, 2), np.float32)}, "pic"),
    ({"seq.lengths": None}, "seq.lengths"),
    ({"seq.lengths": np.full(6, 9)}, "seq.lengths"),
    ({"seq": np.zeros((6, 12, 3), np.float32), "seq.lengths": np.full(6, 11)}, "seq[0]"),  # over max_steps
    ({"extra": np.zeros(6)}, "extra"),
])
def test_labelled_set_mistakes_name_the_array(good, tmp_path, override, field):
    path = _data(tmp_path / "d.npz", **override)
    with pytest.raises(ManifestError) as err:
        load_labelled(path, open_version(good).pack)
    assert err.value.field == field and err.value.path == str(path)
