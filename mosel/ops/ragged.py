"""Ragged inputs: the items of one modality back to back in one flat buffer (`Ragged`),
built from per-request items (numpy arrays or tensors) or from raw wire payloads with a
single copy. What the drop_and_pack op (and its reference) read."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch

from mosel.ops.checks import INPUT_DTYPES

Item = Union[np.ndarray, torch.Tensor]
# numpy dtypes items may have (numpy has no bfloat16)
_NUMPY_DTYPES = {
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
}


@dataclass(frozen=True)
class Ragged:
    """N ragged items of one modality back to back in one 1-D buffer.

    Item i is `flat[offsets[i] : offsets[i] + lengths[i] * row_elems]`, i.e. `lengths[i]`
    steps of `row_elems` elements. offsets/lengths are int64 CPU tensors."""

    flat: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    row_shape: tuple[int, ...]

    @property
    def row_elems(self) -> int:
        return math.prod(self.row_shape)

    @property
    def num_items(self) -> int:
        return int(self.offsets.numel())


def _torch_dtype(dtype) -> torch.dtype:
    """A torch dtype, or the torch dtype of a numpy dtype (or its name) that items may have."""
    if isinstance(dtype, torch.dtype):
        return dtype
    np_dtype = np.dtype(dtype)
    if np_dtype not in _NUMPY_DTYPES:
        raise ValueError(f"items must be uint8, float16 or float32 (bfloat16 as torch tensors), got {np_dtype}")
    return _NUMPY_DTYPES[np_dtype]


def ragged_from_items(
    items: Sequence[Item],
    *,
    sequence: bool,
    row_shape: tuple[int, ...] | None = None,
    pin_memory: bool = False,
    dtype=None,
) -> Ragged:
    """Items ([steps, *row] if `sequence`, else [*row]) -> one flat buffer, one copy.

    numpy items are joined with one np.concatenate (into pinned memory when asked for)
    and wrapped zero-copy with torch.from_numpy; torch items with one torch.cat.
    `dtype` is only used for an empty list (default float32)."""
    n = len(items)
    if n == 0:
        if row_shape is None or any(d < 0 for d in row_shape):
            raise ValueError("an empty batch needs a fixed row_shape (or a spec) to know the row size")
        empty_dtype = torch.float32 if dtype is None else _torch_dtype(dtype)
        return Ragged(torch.empty(0, dtype=empty_dtype), torch.zeros(0, dtype=torch.int64),
                      torch.zeros(0, dtype=torch.int64), tuple(row_shape))
    is_torch = isinstance(items[0], torch.Tensor)
    cls = torch.Tensor if is_torch else np.ndarray
    if not all(isinstance(item, cls) for item in items):
        i = next(i for i, item in enumerate(items) if not isinstance(item, cls))
        raise ValueError(
            f"items[{i}]: expected a {'torch tensor' if is_torch else 'numpy array'} like items[0], "
            f"got {type(items[i]).__name__}"
        )
    dtypes = {item.dtype for item in items}
    if len(dtypes) != 1:
        raise ValueError(f"items have mixed dtypes {sorted(map(str, dtypes))}")
    dtype = _torch_dtype(next(iter(dtypes)))
    if dtype not in INPUT_DTYPES:
        raise ValueError(f"items must be uint8, float16, bfloat16 or float32, got {dtype}")
    shapes = [tuple(item.shape) for item in items]
    if sequence and not all(shapes):
        raise ValueError(f"items[{shapes.index(())}]: a sequence item needs a step axis, got a scalar")
    rows = {s[1:] if sequence else s for s in shapes}
    if len(rows) != 1:
        raise ValueError(f"items disagree on the row shape: {sorted(map(list, rows))}")
    got_row = tuple(int(d) for d in next(iter(rows)))
    if row_shape is not None and -1 not in row_shape and tuple(row_shape) != got_row:
        raise ValueError(f"items have row shape {list(got_row)}, expected {list(row_shape)}")
    row_elems = math.prod(got_row)
    steps = [int(s[0]) for s in shapes] if sequence else [1] * n
    starts = list(itertools.accumulate((st * row_elems for st in steps[:-1]), initial=0))
    lengths = torch.tensor(steps, dtype=torch.int64)
    offsets = torch.tensor(starts, dtype=torch.int64)
    total = starts[-1] + steps[-1] * row_elems
    if is_torch:
        flat = torch.cat([t.reshape(-1) for t in items]) if total else items[0].new_empty(0)
        if pin_memory and flat.device.type == "cpu":
            flat = flat.pin_memory()
    elif pin_memory:
        flat = torch.empty(total, dtype=dtype, pin_memory=True)
        np.concatenate([np.ravel(a) for a in items], out=flat.numpy())
    else:
        flat = torch.from_numpy(np.concatenate([np.ravel(a) for a in items]))
    return Ragged(flat, offsets, lengths, got_row)


def ragged_from_bytes(
    blobs: Sequence[bytes | bytearray | memoryview],
    dtype,
    row_shape: tuple[int, ...],
) -> Ragged:
    """Raw little-endian wire payloads (each a whole number of rows) -> Ragged, one copy
    (np.frombuffer views joined with one np.concatenate, wrapped by torch.from_numpy)."""
    tdtype = _torch_dtype(dtype)
    itemsize = torch.empty(0, dtype=tdtype).element_size()
    row_elems = math.prod(row_shape)
    row_bytes = row_elems * itemsize
    if row_bytes <= 0:
        raise ValueError(f"row_shape {list(row_shape)} has no elements")
    steps = []
    for i, blob in enumerate(blobs):
        size = memoryview(blob).nbytes
        if size % row_bytes:
            raise ValueError(f"blobs[{i}]: {size} bytes is not a whole number of {row_bytes}-byte rows")
        steps.append(size // row_bytes)
    lengths = torch.tensor(steps, dtype=torch.int64)
    offsets = torch.zeros(len(steps), dtype=torch.int64)
    if len(steps) > 1:
        torch.cumsum(lengths[:-1] * row_elems, 0, out=offsets[1:])
    views = [np.frombuffer(b, dtype=np.uint8) for b in blobs]
    joined = np.concatenate(views) if views else np.empty(0, dtype=np.uint8)
    np_dtype = {torch.uint8: np.uint8, torch.float16: np.float16, torch.float32: np.float32}[tdtype]
    flat = torch.from_numpy(joined.view(np_dtype))
    return Ragged(flat, offsets, lengths, tuple(row_shape))
