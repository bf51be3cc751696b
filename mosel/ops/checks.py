"""Argument checks of the pure-torch reference ops (mosel.ops.reference) and of the
Python face: the same conditions, and mostly the same messages, as the C++ ops check
themselves. Bad arguments raise ValueError."""

from __future__ import annotations

import math

import numpy as np
import torch

INPUT_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def as_keep(keep, n: int) -> torch.Tensor:
    """`keep` (None = all, a bool tensor, or anything numpy reads as bools) as a bool tensor [n]."""
    if keep is None:
        return torch.ones(n, dtype=torch.bool)
    if isinstance(keep, torch.Tensor):
        t = keep
    else:
        t = torch.as_tensor(np.asarray(keep, dtype=bool))
    if t.dtype != torch.bool:
        raise ValueError(f"keep must be bool, got {t.dtype}")
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"keep must have {n} entries (one per request), got shape {list(t.shape)}")
    return t


def check_meta(t: torch.Tensor, name: str, dtype: torch.dtype, n: int, data: torch.Tensor) -> torch.Tensor:
    """A 1-D metadata tensor of `n` entries, on the CPU or `data`'s device, brought to the CPU."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor")
    if t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {t.dtype}")
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"{name} must have shape [{n}], got {list(t.shape)}")
    if t.device.type != "cpu" and t.device != data.device:
        raise ValueError(f"{name} is on {t.device} but the data is on {data.device}")
    return t.cpu()


def check_pack_args(flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype, mean, std, max_steps):
    """drop_and_pack's arguments; returns keep, offsets, lengths on the CPU and whether
    the call is a plain copy."""
    if not isinstance(flat, torch.Tensor):
        raise ValueError("flat must be a tensor")
    if flat.dtype not in INPUT_DTYPES:
        raise ValueError(f"flat must be uint8, float16, bfloat16 or float32, got {flat.dtype}")
    if flat.dim() != 1:
        raise ValueError(f"flat must be 1-D, got shape {list(flat.shape)}")
    if not flat.is_contiguous():
        raise ValueError("flat must be contiguous")
    if row_elems < 1:
        raise ValueError(f"row_elems must be >= 1, got {row_elems}")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 (0 = longest item), got {max_steps}")
    if not (math.isfinite(mean) and math.isfinite(std)) or std == 0:
        raise ValueError(f"mean/std must be finite and std non-zero, got mean={mean} std={std}")
    plain = out_dtype == flat.dtype and mean == 0 and std == 1
    if not plain and out_dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"out_dtype must be float16, bfloat16 or float32 (or the input dtype {flat.dtype} "
            f"with mean=0, std=1 for a plain copy), got {out_dtype} with mean={mean} std={std}"
        )
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.dim() != 1:
        raise ValueError("keep must be a 1-D bool tensor")
    n = keep.numel()
    keep_h = check_meta(keep, "keep", torch.bool, n, flat)
    off_h = check_meta(offsets, "offsets", torch.int64, n, flat)
    len_h = check_meta(lengths, "lengths", torch.int64, n, flat)
    numel = flat.numel()
    if n:
        if bool((len_h < 0).any()):
            i = int(torch.nonzero(len_h < 0)[0])
            raise ValueError(f"lengths[{i}] is negative ({int(len_h[i])})")
        bad = (off_h < 0) | (off_h > numel)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(f"offsets[{i}] = {int(off_h[i])} is outside flat ({numel} elements)")
        bad = len_h > (numel - off_h) // row_elems
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"item {i} (offset {int(off_h[i])}, {int(len_h[i])} steps x {row_elems} elements) "
                f"reaches past the end of flat ({numel} elements)"
            )
    return keep_h, off_h, len_h, plain


def check_index(index, num_rows: int, kept: int, data: torch.Tensor) -> torch.Tensor:
    """A scatter index: int64 [kept], values in [0, num_rows), no duplicates; on the CPU."""
    if num_rows < 0:
        raise ValueError(f"number of rows must be >= 0, got {num_rows}")
    idx = check_meta(index, "index", torch.int64, kept, data)
    if kept:
        bad = (idx < 0) | (idx >= num_rows)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0])
            raise ValueError(f"index[{k}] = {int(idx[k])} is out of range for {num_rows} rows")
        if torch.unique(idx).numel() != kept:
            raise ValueError("index has duplicate values")
    return idx


def check_src(src: torch.Tensor, name: str = "src", dim: int = 2) -> None:
    """An embedding tensor: float16/bfloat16/float32, `dim`-D, contiguous."""
    if not isinstance(src, torch.Tensor):
        raise ValueError(f"{name} must be a tensor")
    if src.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16 or float32, got {src.dtype}")
    if src.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {list(src.shape)}")
    if not src.is_contiguous():
        raise ValueError(f"{name} must be contiguous")


def check_tensors(*tensors) -> None:
    """Only that these are tensors: the ops (or the reference) check the rest."""
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"expected a tensor, got {type(t).__name__}")
