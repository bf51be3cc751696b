"""The mosel C++/CUDA ops (torch.ops.mosel.*) against the pure-torch reference in
mosel.ops.batching, plus the extension build/fallback behaviour.

CUDA cases run wherever torch sees a GPU (and the extension has CUDA kernels); they
are skipped otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mosel.ops import batching, extension as ext
from mosel.models.pack import TensorSpec
from tests.ops.cases import assert_same, make_ragged, random_keep, random_values

REPO = Path(__file__).resolve().parents[2]
DISABLED = os.environ.get(ext.DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")

IN_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32]
FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def _cuda_kernels() -> bool:
    return (
        torch.cuda.is_available()
        and ext.load_ops()
        and torch._C._dispatch_has_kernel_for_dispatch_key("mosel::drop_and_pack", "CUDA")
    )


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no GPU"),
    ),
]


@pytest.fixture(scope="module")
def ops():
    if DISABLED:
        pytest.skip(f"{ext.DISABLE_ENV} is set: the C++ ops are disabled")
    assert ext.load_ops(), f"extension failed to build: {ext.build_error()}"
    return torch.ops.mosel


def _ops_or_none():
    return torch.ops.mosel if not DISABLED and ext.load_ops() else None


def _needs_device(device: str) -> None:
    if device == "cuda" and not _cuda_kernels():
        pytest.skip("extension has no CUDA kernels here")


# ---------------------------------------------------------------------------------------
# Reference results


def reference(flat, offsets, lengths, keep, row, stride, out_dtype, mean, std, max_steps):
    return batching.reference_drop_and_pack(flat.cpu(), offsets, lengths, keep, row, stride, out_dtype, mean, std, max_steps)


def norm_args(in_dtype, out_dtype):
    """Normalising (mean/std) unless this is the plain-copy case."""
    if out_dtype == in_dtype:
        return 0.0, 1.0
    return (127.5, 58.25) if in_dtype == torch.uint8 else (-1.5, 3.0)


# ---------------------------------------------------------------------------------------
# drop_and_pack against the reference


def _pairs():
    for i in IN_DTYPES:
        for o in FLOAT_DTYPES + ([i] if i not in FLOAT_DTYPES else []):
            yield i, o


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype,out_dtype", list(_pairs()))
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_drop_and_pack_matches_reference(ops, device, in_dtype, out_dtype, stride):
    _needs_device(device)
    rng = np.random.default_rng(hash((str(in_dtype), str(out_dtype), stride)) % 2**32)
    for trial in range(6):
        n = int(rng.integers(1, 12))
        row = int(rng.choice([1, 3, 4, 12, 37, 64]))
        flat, offsets, lengths = make_ragged(rng, n, row, in_dtype, specials=in_dtype != torch.uint8)
        keep = random_keep(rng, n, ["some", "all", "none", "some", "some", "all"][trial])
        mean, std = norm_args(in_dtype, out_dtype)
        for max_steps in (0, 2, 9):
            x, out_lengths, index = ops.drop_and_pack(
                flat.to(device), offsets, lengths, keep, row, stride, out_dtype, mean, std, max_steps
            )
            ref = reference(flat, offsets, lengths, keep, row, stride, out_dtype, mean, std, max_steps)
            assert x.device.type == device and out_lengths.device.type == device
            assert_same(x, ref.x)
            assert_same(out_lengths, ref.lengths)
            assert_same(index, ref.index)
            if max_steps:
                assert x.shape[1] == max_steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype,out_dtype", list(_pairs()))
def test_drop_and_pack_into_writes_every_element(ops, device, in_dtype, out_dtype):
    """Outputs are poisoned first (NaN / 0xAB / -7): anything the op fails to write shows."""
    _needs_device(device)
    rng = np.random.default_rng(7)
    for stride in (1, 2, 3):
        n = 9
        row = 5 if stride == 2 else 8
        flat, offsets, lengths = make_ragged(rng, n, row, in_dtype, zero_prob=0.3)
        keep = random_keep(rng, n, "some")
        keep[int(rng.integers(0, n))] = True
        mean, std = norm_args(in_dtype, out_dtype)
        k = int(keep.sum())
        for steps in (0, 1, 3, 6):
            poison = 0xAB if out_dtype == torch.uint8 else float("nan")
            packed = torch.full((k, steps, row), poison, dtype=out_dtype, device=device)
            out_lengths = torch.full((k,), -7, dtype=torch.int64, device=device)
            index = torch.full((k,), -7, dtype=torch.int64, device=device)
            ops.drop_and_pack_into(flat.to(device), offsets, lengths, keep, stride, mean, std, packed, out_lengths, index)
            ref = reference(flat, offsets, lengths, keep, row, stride, out_dtype, mean, std, steps)
            if steps == 0:  # the reference pads to the longest item with max_steps=0
                ref = batching.PackedBatch(ref.x[:, :0], torch.zeros_like(ref.lengths), ref.index)
            assert_same(packed, ref.x)
            assert_same(out_lengths, ref.lengths)
            assert_same(index, ref.index)


@pytest.mark.parametrize("device", DEVICES)
def test_drop_and_pack_edge_cases(ops, device):
    _needs_device(device)
    rng = np.random.default_rng(3)
    row = 6
    cases = {
        "single kept": (1, "all"),
        "single dropped": (1, "none"),
        "no requests": (0, "all"),
        "all dropped": (5, "none"),
        "none dropped": (5, "all"),
    }
    for name, (n, mode) in cases.items():
        flat, offsets, lengths = make_ragged(rng, n, row, torch.uint8, zero_prob=0.0)
        keep = random_keep(rng, n, mode)
        for max_steps in (0, 4):
            x, out_lengths, index = ops.drop_and_pack(
                flat.to(device), offsets, lengths, keep, row, 1, torch.float32, 10.0, 2.0, max_steps
            )
            ref = reference(flat, offsets, lengths, keep, row, 1, torch.float32, 10.0, 2.0, max_steps)
            assert_same(x, ref.x), name
            assert_same(out_lengths, ref.lengths), name
            assert_same(index, ref.index), name
    # all items of zero length: K x 0 x row, or padded zeros with max_steps
    flat = torch.zeros(0, dtype=torch.float32)
    offsets = torch.zeros(3, dtype=torch.int64)
    lengths = torch.zeros(3, dtype=torch.int64)
    keep = torch.tensor([True, False, True])
    x, out_lengths, index = ops.drop_and_pack(flat.to(device), offsets, lengths, keep, 4, 2, torch.float16, 1.0, 2.0, 0)
    assert x.shape == (2, 0, 4) and out_lengths.tolist() == [0, 0] and index.tolist() == [0, 2]
    x, *_ = ops.drop_and_pack(flat.to(device), offsets, lengths, keep, 4, 2, torch.float16, 1.0, 2.0, 3)
    assert x.shape == (2, 3, 4) and not x.any()
    # K = 0 with max_steps: [0, max_steps, row]
    x, out_lengths, index = ops.drop_and_pack(
        flat.to(device), offsets, lengths, torch.zeros(3, dtype=torch.bool), 4, 1, torch.float32, 0.0, 1.0, 5
    )
    assert x.shape == (0, 5, 4) and out_lengths.numel() == 0 and index.numel() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_padding_is_zero_after_normalisation(ops, device):
    _needs_device(device)
    flat = torch.full((10,), 200, dtype=torch.uint8)
    offsets = torch.tensor([0, 4])
    lengths = torch.tensor([2, 3])  # row 2: item 0 has 2 steps in 4 elements... row_elems=2
    keep = torch.tensor([True, True])
    x, out_lengths, _ = ops.drop_and_pack(flat.to(device), offsets, lengths, keep, 2, 1, torch.float32, 100.0, 50.0, 0)
    assert out_lengths.tolist() == [2, 3]
    assert x[0, :2].eq(2.0).all() and x[0, 2].eq(0.0).all() and x[1].eq(2.0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_metadata_on_device(ops, device):
    _needs_device(device)
    rng = np.random.default_rng(11)
    flat, offsets, lengths = make_ragged(rng, 6, 8, torch.float32)
    keep = random_keep(rng, 6, "some")
    got = ops.drop_and_pack(flat.to(device), offsets.to(device), lengths.to(device), keep.to(device), 8, 2,
                            torch.bfloat16, 1.0, 4.0, 0)
    ref = reference(flat, offsets, lengths, keep, 8, 2, torch.bfloat16, 1.0, 4.0, 0)
    assert_same(got[0], ref.x)
    assert_same(got[1], ref.lengths)
    assert_same(got[2], ref.index)


# ---------------------------------------------------------------------------------------
# Conversions: exhaustive for 16-bit inputs, random bit patterns for float32 outputs


# Rows of 1 element exercise the scalar conversions of the CPU kernel, rows of 64 its
# vector path.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("row", [1, 64])
def test_16bit_to_float32_exhaustive(ops, device, dtype, row):
    _needs_device(device)
    flat = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype).contiguous()
    n = flat.numel()
    args = (torch.tensor([0]), torch.tensor([n // row]), torch.tensor([True]), row, 1, torch.float32, 0.0, 1.0, 0)
    x, *_ = ops.drop_and_pack(flat.to(device), *args)
    assert_same(x.reshape(-1), flat.to(torch.float32))
    # and back: float32 -> the same 16-bit type is exact for every representable value
    y, *_ = ops.drop_and_pack(x.reshape(-1).contiguous(), *args[:5], dtype, 0.0, 1.0, 0)
    assert_same(y.reshape(-1), flat)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("row", [1, 16])
def test_float32_to_16bit_rounding(ops, device, dtype, row):
    _needs_device(device)
    rng = np.random.default_rng(5)
    bits = rng.integers(-(2**31), 2**31, size=1 << 18, dtype=np.int64).astype(np.int32)
    edges = np.array(
        [65504.0, 65519.99, 65520.0, 65536.0, -65520.0, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-26,
         2.0**-14, 2.0**-14 - 2.0**-25, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8,
         3.3895314e38, 3.4e38, 1e-40, -0.0, 0.0, np.inf, -np.inf, np.nan],
        dtype=np.float32,
    )
    vals = np.concatenate([bits.view(np.float32), edges, (rng.standard_normal(4096) * 1e3).astype(np.float32)])
    vals = vals[: (vals.size // 16) * 16]
    flat = torch.from_numpy(vals.copy())
    args = (torch.tensor([0]), torch.tensor([flat.numel() // row]), torch.tensor([True]), row, 1, dtype, 0.0, 1.0, 0)
    x, *_ = ops.drop_and_pack(flat.to(device), *args)
    assert_same(x.reshape(-1), flat.to(dtype))


# ---------------------------------------------------------------------------------------
# Bad inputs: clear ValueErrors from both the op and the reference, no out-of-bounds reads


def _good():
    flat = torch.arange(24, dtype=torch.float32)
    return dict(
        flat=flat,
        offsets=torch.tensor([0, 8, 16]),
        lengths=torch.tensor([2, 2, 2]),
        keep=torch.tensor([True, False, True]),
        row_elems=4,
        frame_stride=1,
        out_dtype=torch.float32,
        mean=0.5,
        std=2.0,
        max_steps=0,
    )


BAD_PACK = {
    "offset past end": (dict(offsets=torch.tensor([0, 8, 25])), "offsets[2]"),
    "negative offset": (dict(offsets=torch.tensor([-1, 8, 16])), "offsets[0]"),
    "item past end": (dict(offsets=torch.tensor([0, 8, 17])), "past the end"),
    "length past end": (dict(lengths=torch.tensor([2, 2, 3])), "past the end"),
    "huge length": (dict(lengths=torch.tensor([2, 2, 2**62])), "past the end"),
    "negative length": (dict(lengths=torch.tensor([2, -1, 2])), "negative"),
    "offsets size": (dict(offsets=torch.tensor([0, 8])), "offsets"),
    "lengths size": (dict(lengths=torch.tensor([2, 2, 2, 2])), "lengths"),
    "keep length": (dict(keep=torch.tensor([True, True])), "entries"),
    "keep dtype": (dict(keep=torch.tensor([1, 0, 1], dtype=torch.uint8)), "keep"),
    "offsets dtype": (dict(offsets=torch.tensor([0, 8, 16], dtype=torch.int32)), "offsets"),
    "flat dtype": (dict(flat=torch.arange(24, dtype=torch.float64)), "flat"),
    "flat 2-D": (dict(flat=torch.arange(24, dtype=torch.float32).view(6, 4)), "1-D"),
    "flat non-contiguous": (dict(flat=torch.arange(48, dtype=torch.float32)[::2]), "contiguous"),
    "row_elems 0": (dict(row_elems=0), "row_elems"),
    "frame_stride 0": (dict(frame_stride=0), "frame_stride"),
    "max_steps negative": (dict(max_steps=-1), "max_steps"),
    "std 0": (dict(std=0.0), "std"),
    "mean nan": (dict(mean=float("nan")), "mean"),
    "int output dtype": (dict(out_dtype=torch.int32), "out_dtype"),
    "uint8 normalised": (dict(flat=torch.arange(24, dtype=torch.uint8), out_dtype=torch.uint8), "plain"),
}


@pytest.mark.parametrize("case", list(BAD_PACK))
def test_bad_pack_inputs_raise(case):
    change, words = BAD_PACK[case]
    args = {**_good(), **change}
    ops = _ops_or_none()
    if ops is not None:
        with pytest.raises(ValueError, match=re.escape(words)):
            ops.drop_and_pack(*args.values())
    with pytest.raises(ValueError):
        batching.reference_drop_and_pack(*args.values())


def test_good_pack_inputs_pass(ops):
    x, lengths, index = ops.drop_and_pack(*_good().values())
    assert x.shape == (2, 2, 4) and lengths.tolist() == [2, 2] and index.tolist() == [0, 2]


def test_bad_pack_into_outputs_raise(ops):
    g = _good()
    flat, offsets, lengths, keep = g["flat"], g["offsets"], g["lengths"], g["keep"]

    def call(packed, out_lengths=None, index=None):
        k = packed.shape[0] if packed.dim() else 0
        out_lengths = torch.empty(k, dtype=torch.int64) if out_lengths is None else out_lengths
        index = torch.empty(k, dtype=torch.int64) if index is None else index
        ops.drop_and_pack_into(flat, offsets, lengths, keep, 1, 0.0, 1.0, packed, out_lengths, index)

    with pytest.raises(ValueError, match="room for 3"):
        call(torch.empty(3, 2, 4))
    with pytest.raises(ValueError, match="3-D"):
        call(torch.empty(2, 8))
    with pytest.raises(ValueError, match="contiguous"):
        call(torch.empty(2, 4, 2).transpose(1, 2))
    with pytest.raises(ValueError, match="out_lengths"):
        call(torch.empty(2, 2, 4), out_lengths=torch.empty(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="index"):
        call(torch.empty(2, 2, 4), index=torch.empty(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="share memory"):
        ops.drop_and_pack_into(flat, offsets, lengths, keep, 1, 0.0, 1.0, flat[:16].view(2, 2, 4),
                               torch.empty(2, dtype=torch.int64), torch.empty(2, dtype=torch.int64))
    call(torch.empty(2, 2, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no GPU")
def test_cuda_device_mismatch_raises(ops):
    _needs_device("cuda")
    g = _good()
    with pytest.raises(ValueError, match="cuda"):
        ops.drop_and_pack(g["flat"], g["offsets"].cuda(), *list(g.values())[2:])


# ---------------------------------------------------------------------------------------
# scatter_back / scatter_back_into


def _scatter_case(rng, n, k, d, dtype, device):
    src = random_values(rng, k * d, dtype).view(k, d).to(device)
    index = torch.from_numpy(rng.permutation(n)[:k].astype(np.int64))
    return src, index


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scatter_back_matches_reference(ops, device, dtype):
    _needs_device(device)
    rng = np.random.default_rng(1)
    for n, k, d in [(1, 1, 4), (1, 0, 4), (7, 3, 5), (32, 16, 64), (9, 9, 3), (5, 0, 0), (0, 0, 8)]:
        src, index = _scatter_case(rng, n, k, d, dtype, device)
        out, present = ops.scatter_back(src, index, n)
        ref_out, ref_present = batching.reference_scatter_back(src.cpu(), index, n)
        assert out.device.type == device
        assert_same(out, ref_out)
        assert_same(present, ref_present)
        out2, present2 = ops.scatter_back(src, index.to(device), n)  # index on the device too
        assert_same(out2, ref_out)
        assert_same(present2, ref_present)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("src_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
def test_scatter_into_matches_reference_and_leaves_other_rows(ops, device, src_dtype, out_dtype):
    _needs_device(device)
    rng = np.random.default_rng(2)
    for n, m, k, d in [(8, 3, 5, 16), (1, 1, 1, 3), (6, 2, 0, 4), (12, 4, 12, 7)]:
        slot = int(rng.integers(0, m))
        src, index = _scatter_case(rng, n, k, d, src_dtype, device)
        out = torch.full((n, m, d), float("nan"), dtype=out_dtype, device=device)
        present = torch.zeros(n, m, dtype=torch.bool, device=device)
        present[:, (slot + 1) % m] = True  # another modality's flags survive
        ref_out, ref_present = out.cpu().clone(), present.cpu().clone()
        ops.scatter_back_into(out, present, src, index, slot)
        batching.reference_scatter_into(ref_out, ref_present, src.cpu(), index, slot)
        assert_same(out, ref_out)
        assert_same(present, ref_present)


def test_scatter_into_two_partial_batches(ops):
    out, present = batching.new_fusion_buffers(6, 2, 4)
    a = torch.ones(2, 4)
    b = torch.full((3, 4), 2.0)
    ops.scatter_back_into(out, present, a, torch.tensor([0, 4]), 1)
    ops.scatter_back_into(out, present, b, torch.tensor([1, 2, 5]), 1)
    assert present[:, 1].tolist() == [True, True, True, False, True, True]
    assert not present[:, 0].any()
    assert out[:, 1, 0].tolist() == [1.0, 2.0, 2.0, 0.0, 1.0, 2.0]


BAD_SCATTER = {
    "index out of range": (dict(index=torch.tensor([0, 5])), "out of range"),
    "negative index": (dict(index=torch.tensor([-1, 2])), "out of range"),
    "duplicate index": (dict(index=torch.tensor([3, 3])), "duplicate"),
    "index dtype": (dict(index=torch.tensor([0, 1], dtype=torch.int32)), "index"),
    "index length": (dict(index=torch.tensor([0, 1, 2])), "index"),
    "src dtype": (dict(src=torch.ones(2, 4, dtype=torch.float64)), "src"),
    "src 3-D": (dict(src=torch.ones(2, 4, 1)), "src"),
    "src non-contiguous": (dict(src=torch.ones(4, 2).t()), "contiguous"),
    "negative rows": (dict(num_requests=-1), "rows"),
}


@pytest.mark.parametrize("case", list(BAD_SCATTER))
def test_bad_scatter_inputs_raise(case):
    change, words = BAD_SCATTER[case]
    args = {**dict(src=torch.ones(2, 4), index=torch.tensor([0, 2]), num_requests=5), **change}
    ops = _ops_or_none()
    if ops is not None:
        with pytest.raises(ValueError, match=re.escape(words)):
            ops.scatter_back(*args.values())
    with pytest.raises(ValueError):
        batching.reference_scatter_back(*args.values())


BAD_INTO = {
    "slot out of range": (dict(slot=2), "slot"),
    "negative slot": (dict(slot=-1), "slot"),
    "present shape": (dict(present=torch.zeros(5, 3, dtype=torch.bool)), "present"),
    "present dtype": (dict(present=torch.zeros(5, 2, dtype=torch.uint8)), "present"),
    "dim mismatch": (dict(out=torch.zeros(5, 2, 3)), "D"),
    "out dtype": (dict(out=torch.zeros(5, 2, 4, dtype=torch.float64)), "out"),
    "index out of range": (dict(index=torch.tensor([0, 5])), "out of range"),
    "duplicate index": (dict(index=torch.tensor([1, 1])), "duplicate"),
}


@pytest.mark.parametrize("case", list(BAD_INTO))
def test_bad_scatter_into_inputs_raise(case):
    change, words = BAD_INTO[case]
    args = {
        **dict(out=torch.zeros(5, 2, 4), present=torch.zeros(5, 2, dtype=torch.bool), src=torch.ones(2, 4),
               index=torch.tensor([0, 2]), slot=1),
        **change,
    }
    before = args["out"].clone()
    ops = _ops_or_none()
    if ops is not None:
        with pytest.raises(ValueError, match=re.escape(words)):
            ops.scatter_back_into(*args.values())
        assert torch.equal(args["out"], before)  # nothing written on error
    with pytest.raises(ValueError):
        batching.reference_scatter_into(*args.values())


# ---------------------------------------------------------------------------------------
# The Python face (mosel.ops.batching)


@pytest.mark.parametrize("use_ext", [False, None])
def test_batching_from_numpy_items(use_ext):
    if use_ext is None and DISABLED:
        pytest.skip("ops disabled")
    rng = np.random.default_rng(4)
    spec = TensorSpec("uint8", (-1, 3, 5), sequence=True, mean=100.0, std=20.0)
    items = [rng.integers(0, 256, size=(s, 3, 5), dtype=np.uint8) for s in (4, 0, 7, 2, 5)]
    keep = [True, True, False, True, True]
    got = batching.drop_and_pack(items, keep, spec=spec, frame_stride=2, use_ext=use_ext)
    assert got.index.tolist() == [0, 1, 3, 4]
    assert got.lengths.tolist() == [2, 0, 1, 3]
    assert got.x.shape == (4, 3, 15) and got.unflatten().shape == (4, 3, 3, 5)
    for k, i in enumerate(got.index.tolist()):
        want = (torch.from_numpy(items[i][::2]).float() - 100.0) / 20.0
        steps = want.shape[0]
        assert torch.equal(got.x[k, :steps], want.reshape(steps, 15))
        assert not got.x[k, steps:].any()
    assert got.mask().tolist()[1] == [False, False, False]
    assert got.mask().tolist()[3] == [True, True, True]


def test_batching_paths_agree_on_all_inputs_forms():
    rng = np.random.default_rng(8)
    spec = TensorSpec("float32", (-1, 40), sequence=True, mean=-4.0, std=2.5)
    items = [rng.standard_normal((int(rng.integers(1, 30)), 40)).astype(np.float32) for _ in range(9)]
    keep = rng.random(9) < 0.6
    outs = []
    for use_ext in ([False] if DISABLED else [False, True]):
        outs.append(batching.drop_and_pack(items, keep, spec=spec, out_dtype=torch.float16, use_ext=use_ext))
        ragged = batching.ragged_from_items(items, sequence=True)
        outs.append(batching.drop_and_pack(ragged, keep, spec=spec, out_dtype=torch.float16, use_ext=use_ext))
        outs.append(batching.drop_and_pack((ragged.flat, ragged.offsets, ragged.lengths), keep, spec=spec,
                                           out_dtype=torch.float16, use_ext=use_ext))
        blobs = [it.tobytes() for it in items]
        from_bytes = batching.ragged_from_bytes(blobs, "float32", (40,))
        outs.append(batching.drop_and_pack(from_bytes, keep, spec=spec, out_dtype=torch.float16, use_ext=use_ext))
        torch_items = [torch.from_numpy(it) for it in items]
        outs.append(batching.drop_and_pack(torch_items, keep, spec=spec, out_dtype=torch.float16, use_ext=use_ext))
    for o in outs[1:]:
        assert_same(o.x, outs[0].x)
        assert_same(o.lengths, outs[0].lengths)
        assert_same(o.index, outs[0].index)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no GPU")
def test_batching_numpy_items_to_cuda():
    _needs_device("cuda")
    rng = np.random.default_rng(9)
    spec = TensorSpec("uint8", (-1, 3, 8, 8), sequence=True, mean=114.5, std=57.6)
    items = [rng.integers(0, 256, size=(int(rng.integers(1, 9)), 3, 8, 8), dtype=np.uint8) for _ in range(7)]
    keep = rng.random(7) < 0.5
    for out_dtype in FLOAT_DTYPES:
        got = batching.drop_and_pack(items, keep, spec=spec, frame_stride=2, out_dtype=out_dtype, device="cuda")
        want = batching.drop_and_pack(items, keep, spec=spec, frame_stride=2, out_dtype=out_dtype, use_ext=False)
        assert got.x.is_cuda and got.lengths.is_cuda and got.index.is_cuda
        assert_same(got.x, want.x)
        assert_same(got.lengths, want.lengths)
        assert_same(got.index, want.index)


def test_batching_non_sequence_and_empty():
    spec = TensorSpec("uint8", (4, 4), mean=0.0, std=255.0)
    items = [np.full((4, 4), v, dtype=np.uint8) for v in (0, 255, 51)]
    got = batching.drop_and_pack(items, [True, False, True], spec=spec)
    assert got.x.shape == (2, 1, 16) and got.lengths.tolist() == [1, 1] and got.index.tolist() == [0, 2]
    assert torch.allclose(got.x[1], torch.full((1, 16), 0.2))
    none = batching.drop_and_pack(items, [False] * 3, spec=spec)
    assert none.x.shape == (0, 0, 16) and none.index.numel() == 0
    empty = batching.drop_and_pack([], spec=spec)
    assert empty.x.shape == (0, 0, 16)
    raw = batching.drop_and_pack(items, spec=TensorSpec("uint8", (4, 4)), out_dtype=torch.uint8)
    assert raw.x.dtype == torch.uint8 and raw.x[1].eq(255).all()


def test_batching_rejects_bad_items():
    with pytest.raises(ValueError, match="row shape"):
        batching.drop_and_pack([np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)], sequence=True)
    with pytest.raises(ValueError, match="dtype"):
        batching.drop_and_pack([np.zeros((2, 3), np.float32), np.zeros((2, 3), np.uint8)], sequence=True)
    with pytest.raises(ValueError, match="float64"):
        batching.drop_and_pack([np.zeros((2, 3), np.float64)], sequence=True)
    with pytest.raises(ValueError, match="entries"):
        batching.drop_and_pack([np.zeros((2, 3), np.float32)], [True, False], sequence=True)
    with pytest.raises(ValueError, match="whole number"):
        batching.ragged_from_bytes([b"\0" * 7], "float32", (1,))


@pytest.mark.skipif(DISABLED, reason="ops disabled")
def test_pack_buffer_reuses_memory():
    rng = np.random.default_rng(12)
    buf = batching.PackBuffer()
    for trial in range(4):
        items = [rng.integers(0, 256, size=(int(rng.integers(0, 9)), 2, 3), dtype=np.uint8) for _ in range(6)]
        keep = rng.random(6) < 0.7
        for stride, max_steps in ((1, 0), (2, 0), (3, 2)):
            kw = dict(sequence=True, frame_stride=stride, out_dtype=torch.float16, mean=3.0, std=7.0, max_steps=max_steps)
            want = batching.drop_and_pack(items, keep, use_ext=False, **kw)
            got = batching.drop_and_pack(items, keep, use_ext=True, buffer=buf, **kw)
            assert_same(got.x, want.x)
            assert_same(got.lengths, want.lengths)
            assert_same(got.index, want.index)
    before = buf.nbytes
    a = batching.drop_and_pack([np.ones((2, 4), np.float32)], sequence=True, buffer=buf)
    b = batching.drop_and_pack([np.zeros((2, 4), np.float32)], sequence=True, buffer=buf)
    assert a.x.data_ptr() == b.x.data_ptr() and not a.x.any()  # b overwrote a: documented
    assert buf.nbytes == before


def test_batching_scatter_helpers():
    src = torch.arange(8, dtype=torch.float32).view(2, 4)
    for use_ext in ([False] if DISABLED else [False, True]):
        out, present = batching.scatter_back(src, torch.tensor([2, 0]), 3, use_ext=use_ext)
        assert out.tolist() == [[4, 5, 6, 7], [0, 0, 0, 0], [0, 1, 2, 3]]
        assert present.tolist() == [True, False, True]
        emb, pres = batching.new_fusion_buffers(3, 2, 4)
        batching.scatter_into(emb, pres, src, torch.tensor([1, 2]), 0, use_ext=use_ext)
        assert emb[:, 0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [4, 5, 6, 7]] and not emb[:, 1].any()
        assert pres.tolist() == [[False, False], [True, False], [True, False]]


# ---------------------------------------------------------------------------------------
# Build and fallback


@pytest.mark.skipif(DISABLED, reason="MOSEL_DISABLE_EXT is set")
def test_extension_builds_here():
    assert ext.load_ops(), f"the mosel extension failed to build: {ext.build_error()}"
    assert ext.ops_available() and ext.build_error() is None
    assert ext.load_ops()  # idempotent
    for name in ("drop_and_pack", "drop_and_pack_into", "scatter_back", "scatter_back_into"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mosel::{name}", "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mosel::{name}", "Meta")  # the fakes
    assert str(ext.build_directory()).startswith(str(ext.mosel_home() / "build" / "ext-"))


def test_sources_one_file_set_per_op_family():
    cpu = ext._sources(with_cuda=False)
    everything = ext._sources(with_cuda=True)
    names = {str(p.relative_to(ext.CSRC_DIR)) for p in everything}
    for family in ext.OP_FAMILIES:
        for suffix in (".cpp", "_cpu.cpp", "_cuda.cpp", "_kernel.cu"):
            assert f"ops/{family}/{family}{suffix}" in names
    assert not [p for p in cpu if p.suffix == ".cu" or p.stem.endswith("_cuda")]
    assert set(cpu) < set(everything)
    assert not ext._object_clashes(everything)
    assert ext._object_clashes([ext.CSRC_DIR / "a" / "x.cpp", ext.CSRC_DIR / "b" / "x.cpp"])


def test_build_hash_covers_headers(tmp_path, monkeypatch):
    csrc = tmp_path / "csrc"
    shutil.copytree(REPO / "csrc", csrc)
    monkeypatch.setattr(ext, "CSRC_DIR", csrc)
    sources = ext._sources(with_cuda=False)
    before = ext._build_hash(sources, False, [], [])
    header = csrc / "common" / "cuda" / "rows.cuh"  # not even part of a CPU build
    header.write_text(header.read_text() + "\n// changed\n")
    assert ext._build_hash(sources, False, [], []) != before


def _run_python(code: str, env_extra: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOSEL_HOME": str(tmp_path / "home"), **env_extra}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


FALLBACK_SCRIPT = """
    import threading, numpy as np, torch
    from mosel.ops import batching, extension as ext
    results = []
    threads = [threading.Thread(target=lambda: results.append(ext.load_ops())) for _ in range(4)]
    [t.start() for t in threads]; [t.join() for t in threads]
    assert results == [False] * 4, results
    assert not ext.ops_available() and ext.build_error()
    items = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((1, 4), np.float32)]
    for _ in range(3):
        got = batching.drop_and_pack(items, [True, True], sequence=True, mean=1.0, std=2.0)
    assert got.x.shape == (2, 3, 4) and float(got.x[1, 0, 0]) == 0.0
    print("REASON:", ext.build_error())
"""


def test_disabled_extension_warns_once_and_falls_back(tmp_path):
    proc = _run_python(FALLBACK_SCRIPT, {ext.DISABLE_ENV: "1"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("mosel C++ ops unavailable") == 1, proc.stderr
    assert "MOSEL_DISABLE_EXT" in proc.stderr
    assert not (tmp_path / "home" / "build").exists()  # nothing was built


def test_missing_sources_warn_once(tmp_path):
    script = "from pathlib import Path\nimport mosel.ops.extension\nmosel.ops.extension.CSRC_DIR = Path(%r)\n" % str(tmp_path / "nowhere")
    proc = _run_python(script + textwrap.dedent(FALLBACK_SCRIPT), {ext.DISABLE_ENV: "0"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("mosel C++ ops unavailable") == 1, proc.stderr
    assert "sources missing" in proc.stderr


@pytest.mark.slow
def test_broken_build_warns_once_with_reason(tmp_path):
    csrc = tmp_path / "csrc"
    shutil.copytree(REPO / "csrc", csrc)
    schema = csrc / "ops" / "drop_and_pack" / "drop_and_pack.cpp"
    schema.write_text(schema.read_text() + "\nthis is not C++;\n")
    script = "from pathlib import Path\nimport mosel.ops.extension\nmosel.ops.extension.CSRC_DIR = Path(%r)\n" % str(csrc)
    proc = _run_python(script + textwrap.dedent(FALLBACK_SCRIPT), {ext.DISABLE_ENV: "0"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("mosel C++ ops unavailable") == 1, proc.stderr
    assert "failed" in proc.stderr and "error" in proc.stderr.lower()
