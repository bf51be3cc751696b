"""Artifacts: AV-Digits encoders and fusion head exported (pt2, TorchScript), loaded back and
compared with the eager modules; broken artifact files give ArtifactError naming file and field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mosel.models.checkpoint import sha256_file
from mosel.models.pack import TensorSpec
from mosel.models.registry import get_pack
from mosel.ops.batching import drop_and_pack
from mosel.repository.artifacts import (
    ArtifactError,
    ExportedModule,
    export_encoder,
    export_fusion_head,
    load_artifact,
    present_patterns,
)

FORMATS = {"pt2": ".pt2", "torchscript": ".pt"}
TIGHT = dict(rtol=1e-5, atol=1e-6)
FIELD = "modalities[1].encoder"


@pytest.fixture(scope="module")
def model():
    """A seeded, untrained tiny pack with non-trivial batch-norm statistics (eval mode)."""
    torch.manual_seed(0)
    pack = get_pack("av-digits", preset="tiny")
    encoders = {m: pack.build_encoder(m) for m in pack.modality_names}
    head = pack.build_fusion_head()
    gen = torch.Generator().manual_seed(1)
    for module in [*encoders.values(), head]:
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.running_mean.copy_(0.3 * torch.randn(sub.running_mean.shape, generator=gen))
                sub.running_var.copy_(0.5 + torch.rand(sub.running_var.shape, generator=gen))
        module.eval()
    return pack, encoders, head


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """{(format, "audio" | "image" | "video" | "head"): (path, sha256)}; every export self-checks."""
    pack, encoders, head = model
    folder = tmp_path_factory.mktemp("artifacts")
    out = {}
    for fmt, suffix in FORMATS.items():
        for m, enc in encoders.items():
            path = folder / fmt / f"{m}{suffix}"
            out[fmt, m] = path, export_encoder(enc, pack.modality(m).spec, path, max_batch=32, format=fmt)
        path = folder / fmt / f"fusion_head{suffix}"
        out[fmt, "head"] = path, export_fusion_head(head, len(pack.modality_names), pack.embed_dim, path,
                                                    max_batch=32, format=fmt)
    return out


@pytest.fixture(scope="module")
def loaded(exported):
    return {key: load_artifact(path, str(key)).eval() for key, (path, _) in exported.items()}


def _items(spec: TensorSpec, steps: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for n in steps:
        shape = [n if d == -1 else d for d in spec.shape]
        if spec.dtype == "uint8":
            out.append(rng.integers(0, 256, size=shape, dtype=np.uint8))
        else:
            out.append((spec.mean + spec.std * rng.standard_normal(shape)).astype(spec.dtype))
    return out


def _batches(spec: TensorSpec):
    """(label, item steps) for batch 1 and 32, uniform and padded (mixed lengths)."""
    if not spec.sequence:
        return [("K=1", [1]), ("K=32", [1] * 32)]
    longest = spec.max_steps
    rng = np.random.default_rng(7)
    cases = [("K=1 L=1", [1]), ("K=1 L=2", [2]), ("K=1 L=8", [8]), (f"K=1 L={longest}", [longest]),
             ("K=32 L=8", [8] * 32), ("K=32 mixed<=8", [8, 1] + rng.integers(1, 9, 30).tolist()),
             (f"K=32 mixed<={longest}", [longest, 1] + rng.integers(1, longest + 1, 30).tolist())]
    return cases


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("modality", ["audio", "image", "video"])
def test_encoder_matches_eager(model, loaded, fmt, modality):
    pack, encoders, _ = model
    spec = pack.modality(modality).spec
    eager, artifact = encoders[modality], loaded[fmt, modality]
    with torch.inference_mode():
        for i, (label, steps) in enumerate(_batches(spec)):
            items = _items(spec, steps, seed=i)
            packed = drop_and_pack(items, spec=spec)
            want = eager(packed.x, packed.lengths)
            got = artifact(packed.x, packed.lengths)
            assert got.shape == (len(steps), pack.embed_dim) and got.dtype == torch.float32, label
            torch.testing.assert_close(got, want, **TIGHT, msg=lambda m: f"{fmt} {modality} {label}: {m}")
            if len(steps) > 1 and len(set(steps)) > 1:  # padding never leaks between items
                for j in (0, 1, len(steps) - 1):
                    alone = drop_and_pack([items[j]], spec=spec)
                    torch.testing.assert_close(artifact(alone.x, alone.lengths)[0], got[j], **TIGHT)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fusion_head_matches_eager_on_every_subset(model, loaded, fmt):
    pack, _, head = model
    artifact = loaded[fmt, "head"]
    m, d = len(pack.modality_names), pack.embed_dim
    patterns = present_patterns(m)
    assert len(patterns) == 2**m - 1
    gen = torch.Generator().manual_seed(3)
    rows = torch.randint(0, len(patterns), (32,), generator=gen)
    cases = [patterns[i : i + 1] for i in range(len(patterns))] + [patterns, patterns[rows]]
    with torch.inference_mode():
        for present in cases:
            emb = torch.randn(present.shape[0], m, d, generator=gen)
            emb = torch.where(present[..., None], emb, torch.full_like(emb, 1e4))  # absent rows: garbage
            want, got = head(emb, present), artifact(emb, present)
            assert got.shape == (present.shape[0], pack.num_classes)
            torch.testing.assert_close(got, want, **TIGHT)
            assert torch.equal(got.argmax(1), want.argmax(1))


def test_loaded_modules_and_digests(exported, loaded):
    for (fmt, name), (path, digest) in exported.items():
        assert digest == sha256_file(path)
        module = loaded[fmt, name]
        assert isinstance(module, nn.Module) and not module.training
        if fmt == "pt2":
            assert isinstance(module, ExportedModule)
            with pytest.raises(RuntimeError, match="inference only"):
                module.train()
        else:
            assert isinstance(module, torch.jit.ScriptModule)
    assert not any(p.name.endswith(".tmp" + p.suffix) for p in exported["pt2", "head"][0].parent.iterdir())


def test_torchscript_keeps_the_eager_checks(model, loaded):
    pack, _, _ = model
    head = loaded["torchscript", "head"]
    emb = torch.zeros(2, len(pack.modality_names), pack.embed_dim)
    present = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(Exception, match="no present modality"):
        head(emb, present)


def test_pt2_rejects_inputs_outside_the_exported_range(model, loaded):
    pack, _, _ = model
    spec = pack.modality("video").spec
    x = torch.zeros(1, spec.max_steps + 1, spec.row_elems)
    with pytest.raises(Exception):
        loaded["pt2", "video"](x, torch.tensor([spec.max_steps + 1]))


# ------------------------------------------------------------------ broken artifacts


def _assert_names(exc: ArtifactError, path, field=FIELD):
    assert exc.path == str(path)
    assert exc.field == field
    assert str(exc).startswith(f"{path}: {field}: ")
    assert exc.message and exc.message in str(exc)


@pytest.mark.parametrize("name", ["missing.pt2", "missing.pt"])
def test_missing_file(tmp_path, name):
    with pytest.raises(ArtifactError, match="not found") as info:
        load_artifact(tmp_path / name, FIELD)
    _assert_names(info.value, tmp_path / name)


@pytest.mark.parametrize("name", ["encoder.bin", "encoder", "encoder.pth"])
def test_unknown_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="unknown artifact suffix") as info:
        load_artifact(path, FIELD)
    _assert_names(info.value, path)


def test_directory_is_not_an_artifact(tmp_path):
    path = tmp_path / "encoder.pt2"
    path.mkdir()
    with pytest.raises(ArtifactError, match="not a file") as info:
        load_artifact(path, FIELD)
    _assert_names(info.value, path)


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _json(path):
    path.write_text(json.dumps({"format": "mosel-model/1", "name": "x"}))


def _state_dict(path):
    torch.save(nn.Linear(3, 2).state_dict(), path)


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
@pytest.mark.parametrize("writer", [_random_bytes, _json, _state_dict, _empty])
def test_file_that_is_not_a_model(tmp_path, capfd, suffix, writer):
    path = tmp_path / f"encoder{suffix}"
    writer(path)
    capfd.readouterr()
    with pytest.raises(ArtifactError, match="cannot load as") as info:
        load_artifact(path, FIELD)
    _assert_names(info.value, path)
    assert "state dict" in info.value.message  # the hint
    assert "warnings above" not in info.value.message
    assert "Traceback" not in capfd.readouterr().err  # torch.export.load logs one; it is caught


def test_artifact_of_the_other_format(exported, tmp_path):
    for src, suffix in ((exported["torchscript", "audio"][0], ".pt2"), (exported["pt2", "audio"][0], ".pt")):
        path = tmp_path / f"renamed{suffix}"
        path.write_bytes(src.read_bytes())
        with pytest.raises(ArtifactError) as info:
            load_artifact(path, FIELD)
        _assert_names(info.value, path)


def test_error_without_field(tmp_path):
    exc = ArtifactError(tmp_path / "a.pt2", message="broken")
    assert str(exc) == f"{tmp_path / 'a.pt2'}: broken" and exc.field == ""


def test_onnx_without_onnxruntime(tmp_path):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("onnxruntime is installed")
    path = tmp_path / "encoder.onnx"
    path.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="onnxruntime") as info:
        load_artifact(path, FIELD)
    _assert_names(info.value, path)


def test_onnx_fusion_head(model, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings

    pack, _, head = model
    m, d = len(pack.modality_names), pack.embed_dim
    path = tmp_path / "fusion_head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (torch.randn(3, m, d), present_patterns(m)[:3]), str(path), dynamo=False,
                          input_names=["emb", "present"], dynamic_axes={"emb": {0: "B"}, "present": {0: "B"}})
    artifact = load_artifact(path, "fusion_head").eval()
    patterns = present_patterns(m)
    emb = torch.randn(len(patterns), m, d)
    with torch.inference_mode():
        torch.testing.assert_close(artifact(emb, patterns), head(emb, patterns), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ export errors


def test_export_format_and_suffix_must_agree(model, tmp_path):
    pack, encoders, _ = model
    spec = pack.modality("image").spec
    with pytest.raises(ValueError, match="must end in .pt2"):
        export_encoder(encoders["image"], spec, tmp_path / "image.pt", format="pt2")
    with pytest.raises(ValueError, match="unknown artifact format"):
        export_encoder(encoders["image"], spec, tmp_path / "image.onnx", format="onnx")


class _DataDependent(nn.Module):
    """Slices by a value of `lengths`: torch.export cannot trace that."""

    def forward(self, x, lengths):
        return x[:, : int(lengths.max())].sum(1)


class _FrozenBranch(nn.Module):
    """Not scriptable (try/except), so TorchScript export traces it, freezing the branch taken."""

    def forward(self, x, lengths):
        try:
            uniform = bool((lengths == x.shape[1]).all())
        except RuntimeError:
            uniform = False
        return x.sum(1) if uniform else 2 * x.sum(1)


def test_export_failure_is_an_artifact_error(tmp_path):
    spec = TensorSpec("float32", (-1, 4), sequence=True, max_steps=16)
    path = tmp_path / "enc.pt2"
    with pytest.raises(ArtifactError, match="torch.export failed") as info:
        export_encoder(_DataDependent(), spec, path, field=FIELD)
    _assert_names(info.value, path)
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_export_check_catches_a_frozen_trace(tmp_path):
    spec = TensorSpec("float32", (-1, 4), sequence=True, max_steps=16)
    path = tmp_path / "enc.pt"
    with pytest.raises(ArtifactError, match="differs from the module") as info:
        export_encoder(_FrozenBranch(), spec, path, format="torchscript", field=FIELD)
    _assert_names(info.value, path)
    assert not any(tmp_path.iterdir())
    # unchecked, the (wrong) trace is written
    export_encoder(_FrozenBranch(), spec, path, format="torchscript", check=False)
    assert path.is_file()


def test_export_keeps_the_module_mode(model, tmp_path):
    pack, _, _ = model
    torch.manual_seed(0)
    head = pack.build_fusion_head().train()
    export_fusion_head(head, len(pack.modality_names), pack.embed_dim, tmp_path / "h.pt", format="torchscript")
    assert head.training


# ------------------------------------------------------------------ the micro-benchmark


@pytest.mark.slow
def test_compare_latency_smoke(tiny_model_home):
    from mosel.bench.artifacts import compare_latency

    rows, table = compare_latency(preset="tiny", home=tiny_model_home, repeats=2, batches=(1, 4), warmup=1)
    assert [(r.module, r.batch) for r in rows] == [
        (m, b) for m in ("audio", "image", "video", "fusion_head") for b in (1, 4)
    ]
    for r in rows:
        assert r.eager_ms > 0 and r.pt2_ms > 0 and r.torchscript_ms > 0
        assert r.max_abs_diff < 1e-4
    assert table.count("\n| ") == len(rows) + 1 and "preset tiny" in table
    with pytest.raises(ValueError, match="preset 'tiny', not 'default'"):
        compare_latency(preset="default", home=tiny_model_home)
