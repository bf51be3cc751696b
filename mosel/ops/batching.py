"""Batching for the encoders: fused modality dropping + packing, and scattering the
embeddings back into request order. The Python face of the C++/CUDA ops (csrc/,
`torch.ops.mosel.*`), with the straightforward pure-torch reference next to it.

Packing follows the contract in mosel.models.pack: the kept items of one modality
become `x[K, L, row_elems]` (values `(v - mean) / std` computed in float32, rounded to
`out_dtype`, zero padding after normalisation), `lengths[K]` and `index[K]` (request
position of each kept item). A sequence item is `[steps, *row]` and may be sub-sampled
with a frame stride (steps 0, k, 2k, ...); a non-sequence item is one step.

The ops are used when `mosel.ops.extension.load_ops()` succeeds (and, for CUDA tensors, when the
extension was built with CUDA); otherwise the reference runs, after one logged warning.
Both raise ValueError for malformed input.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from mosel.ops import extension as ext
from mosel.models.pack import TensorSpec

logger = logging.getLogger(__name__)

Item = Union[np.ndarray, torch.Tensor]
_INPUT_DTYPES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_NUMPY_DTYPES = {
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
}


# ---------------------------------------------------------------------------------------
# Containers


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


@dataclass(frozen=True)
class PackedBatch:
    """x [K, L, row_elems], lengths int64[K] (steps per kept item), index int64[K]
    (request position of each kept item), all on one device."""

    x: torch.Tensor
    lengths: torch.Tensor
    index: torch.Tensor
    row_shape: tuple[int, ...] = ()

    @property
    def num_kept(self) -> int:
        return int(self.x.shape[0])

    def mask(self) -> torch.Tensor:
        """bool [K, L]: True where a step holds data (False on padding)."""
        steps = torch.arange(self.x.shape[1], device=self.x.device)
        return steps.unsqueeze(0) < self.lengths.to(self.x.device).unsqueeze(1)

    def unflatten(self) -> torch.Tensor:
        """x viewed as [K, L, *row_shape]."""
        return self.x.view(self.x.shape[0], self.x.shape[1], *self.row_shape)


class PackBuffer:
    """Reusable output memory for drop_and_pack (opt-in, one per caller/device).

    Allocating a fresh multi-megabyte output per batch costs page faults that can take
    longer than the packing itself (a 38 MB float32 video batch: ~20 ms of faults vs ~2 ms
    of work on a 2-core VM). With a buffer, `x` of the returned batch is a view into
    memory that the *next* drop_and_pack call with the same buffer overwrites: use it
    only where the batch is consumed before the next call (e.g. under an encoder's
    device lock). The buffer grows as needed and never shrinks."""

    def __init__(self) -> None:
        self._storage: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return 0 if self._storage is None else self._storage.numel()

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """An uninitialised tensor of `shape`/`dtype` on `device`, backed by the buffer."""
        itemsize = torch.empty(0, dtype=dtype).element_size()
        nbytes = math.prod(shape) * itemsize
        st = self._storage
        if st is None or st.device != torch.device(device) or st.numel() < nbytes:
            grow = 0 if st is None or st.device != torch.device(device) else st.numel() + st.numel() // 4
            self._storage = st = torch.empty(max(nbytes, grow), dtype=torch.uint8, device=device)
        return st[:nbytes].view(dtype).view(shape)


# ---------------------------------------------------------------------------------------
# Building the ragged buffer


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    np_dtype = np.dtype(dtype)
    if np_dtype not in _NUMPY_DTYPES:
        raise ValueError(f"items must be uint8, float16 or float32 (bfloat16 as torch tensors), got {np_dtype}")
    return _NUMPY_DTYPES[np_dtype]


def _pinned_ok(device: torch.device | None) -> bool:
    return device is not None and device.type == "cuda" and torch.cuda.is_available()


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
    if dtype not in _INPUT_DTYPES:
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


# ---------------------------------------------------------------------------------------
# Checks shared by the reference path (the C++ ops check the same things themselves)


def _as_keep(keep, n: int) -> torch.Tensor:
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


def _check_meta(t: torch.Tensor, name: str, dtype: torch.dtype, n: int, data: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor")
    if t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {t.dtype}")
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"{name} must have shape [{n}], got {list(t.shape)}")
    if t.device.type != "cpu" and t.device != data.device:
        raise ValueError(f"{name} is on {t.device} but the data is on {data.device}")
    return t.cpu()


def _check_pack_args(flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype, mean, std, max_steps):
    if not isinstance(flat, torch.Tensor):
        raise ValueError("flat must be a tensor")
    if flat.dtype not in _INPUT_DTYPES:
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
    if not plain and out_dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"out_dtype must be float16, bfloat16 or float32 (or the input dtype {flat.dtype} "
            f"with mean=0, std=1 for a plain copy), got {out_dtype} with mean={mean} std={std}"
        )
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.dim() != 1:
        raise ValueError("keep must be a 1-D bool tensor")
    n = keep.numel()
    keep_h = _check_meta(keep, "keep", torch.bool, n, flat)
    off_h = _check_meta(offsets, "offsets", torch.int64, n, flat)
    len_h = _check_meta(lengths, "lengths", torch.int64, n, flat)
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


def _check_index(index, num_rows: int, kept: int, data: torch.Tensor) -> torch.Tensor:
    if num_rows < 0:
        raise ValueError(f"number of rows must be >= 0, got {num_rows}")
    idx = _check_meta(index, "index", torch.int64, kept, data)
    if kept:
        bad = (idx < 0) | (idx >= num_rows)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0])
            raise ValueError(f"index[{k}] = {int(idx[k])} is out of range for {num_rows} rows")
        if torch.unique(idx).numel() != kept:
            raise ValueError("index has duplicate values")
    return idx


def _check_src(src: torch.Tensor, name: str = "src", dim: int = 2) -> None:
    if not isinstance(src, torch.Tensor):
        raise ValueError(f"{name} must be a tensor")
    if src.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float16, bfloat16 or float32, got {src.dtype}")
    if src.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {list(src.shape)}")
    if not src.is_contiguous():
        raise ValueError(f"{name} must be contiguous")


# ---------------------------------------------------------------------------------------
# Reference implementations (pure torch; the fallback, and what the tests compare with)


def reference_drop_and_pack(
    flat: torch.Tensor,
    offsets: torch.Tensor,
    lengths: torch.Tensor,
    keep: torch.Tensor,
    row_elems: int,
    frame_stride: int = 1,
    out_dtype: torch.dtype = torch.float32,
    mean: float = 0.0,
    std: float = 1.0,
    max_steps: int = 0,
) -> PackedBatch:
    """Slice each kept item, sub-sample, cast, normalise, pad_sequence."""
    keep_h, off_h, len_h, plain = _check_pack_args(
        flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype, mean, std, max_steps
    )
    kept = torch.nonzero(keep_h).flatten().tolist()
    seqs = []
    for i in kept:
        start, steps = int(off_h[i]), int(len_h[i])
        item = flat[start : start + steps * row_elems].view(steps, row_elems)[::frame_stride]
        if max_steps:
            item = item[:max_steps]
        if not plain:
            item = ((item.to(torch.float32) - mean) / std).to(out_dtype)
        seqs.append(item)
    out_lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.int64)
    steps = (max_steps or int(out_lengths.max())) if seqs else max_steps
    if seqs:
        x = pad_sequence(seqs, batch_first=True)  # zero padding, after normalisation
        if x.shape[1] < steps:
            x = torch.nn.functional.pad(x, (0, 0, 0, steps - x.shape[1]))
    else:
        x = torch.zeros(0, steps, row_elems, dtype=out_dtype, device=flat.device)
    index = torch.tensor(kept, dtype=torch.int64)
    return PackedBatch(x, out_lengths.to(flat.device), index.to(flat.device))


def reference_scatter_back(src: torch.Tensor, index: torch.Tensor, num_requests: int) -> tuple[torch.Tensor, torch.Tensor]:
    """out = zeros [N, D]; out[index] = src; present[index] = True."""
    _check_src(src)
    idx = _check_index(index, num_requests, src.shape[0], src).to(src.device)
    out = src.new_zeros(num_requests, src.shape[1])
    present = torch.zeros(num_requests, dtype=torch.bool, device=src.device)
    out.index_copy_(0, idx, src)
    present[idx] = True
    return out, present


def reference_scatter_into(
    out: torch.Tensor, present: torch.Tensor, src: torch.Tensor, index: torch.Tensor, slot: int
) -> None:
    """out[index, slot] = src (cast to out's dtype); present[index, slot] = True."""
    _check_src(src)
    _check_src(out, "out", 3)
    if out.device != src.device or present.device != src.device:
        raise ValueError(f"out/present/src must share a device, got {out.device}/{present.device}/{src.device}")
    if out.shape[2] != src.shape[1]:
        raise ValueError(f"out [N, M, D] has D = {out.shape[2]} but src has D = {src.shape[1]}")
    if present.dtype != torch.bool or tuple(present.shape) != tuple(out.shape[:2]):
        raise ValueError(f"present must be bool {list(out.shape[:2])}, got {present.dtype} {list(present.shape)}")
    if not 0 <= slot < out.shape[1]:
        raise ValueError(f"slot {slot} is out of range for {out.shape[1]} modality slots")
    idx = _check_index(index, out.shape[0], src.shape[0], src).to(src.device)
    out[idx, slot] = src.to(out.dtype)
    present[idx, slot] = True


# ---------------------------------------------------------------------------------------
# Dispatch between the ops and the reference

_warned_no_cuda_kernels = False


def _use_ops(device: torch.device, use_ext: bool | None) -> bool:
    """Whether torch.ops.mosel should run for tensors on `device`."""
    global _warned_no_cuda_kernels
    if use_ext is False:
        return False
    if not ext.load_ops():
        if use_ext:
            raise RuntimeError(f"mosel C++ ops requested but unavailable: {ext.build_error()}")
        return False
    if device.type == "cpu":
        return True
    has = torch._C._dispatch_has_kernel_for_dispatch_key("mosel::drop_and_pack", device.type.upper())
    if not has:
        if use_ext:
            raise RuntimeError(f"mosel C++ ops were built without {device.type} kernels")
        if not _warned_no_cuda_kernels:
            _warned_no_cuda_kernels = True
            logger.warning("mosel C++ ops have no %s kernels in this build; using the reference path", device.type)
    return has


def drop_and_pack(
    items: Sequence[Item] | Ragged | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    keep=None,
    *,
    spec: TensorSpec | None = None,
    sequence: bool | None = None,
    row_shape: tuple[int, ...] | None = None,
    frame_stride: int = 1,
    out_dtype: torch.dtype = torch.float32,
    mean: float | None = None,
    std: float | None = None,
    max_steps: int = 0,
    device: torch.device | str | None = None,
    use_ext: bool | None = None,
    buffer: PackBuffer | None = None,
) -> PackedBatch:
    """Pack the kept items of one modality into x [K, L, row_elems] (see module doc).

    items: a list of per-request items (numpy arrays or tensors; [steps, *row] when
      `sequence`, else [*row]), a Ragged, or a prepared (flat, offsets, lengths) tuple
      (then row_shape or spec gives the row size).
    keep: bool per request (None = keep all).
    spec: supplies sequence, row shape, mean and std unless given explicitly.
    max_steps: > 0 truncates/pads every item to exactly that many steps; 0 = longest.
    device: where x goes (default: where the items are). CPU items bound for CUDA are
      staged in pinned memory and copied asynchronously.
    use_ext: None = the C++ ops when available, False = reference, True = ops or error.
    buffer: write x into this reusable PackBuffer (ops path only; see PackBuffer for the
      lifetime rule). Without it, x is freshly allocated.
    """
    if spec is not None:
        sequence = spec.sequence if sequence is None else sequence
        row_shape = tuple(spec.row_shape) if row_shape is None else row_shape
        mean = spec.mean if mean is None else mean
        std = spec.std if std is None else std
    mean = 0.0 if mean is None else float(mean)
    std = 1.0 if std is None else float(std)
    target = torch.device(device) if device is not None else None
    index_override = None

    if isinstance(items, Ragged):
        ragged = items
        keep_t = _as_keep(keep, ragged.num_items)
    elif isinstance(items, tuple) and len(items) == 3 and all(isinstance(t, torch.Tensor) for t in items):
        if row_shape is None or -1 in row_shape:
            raise ValueError("a prepared (flat, offsets, lengths) batch needs row_shape (or a spec with a fixed row)")
        ragged = Ragged(items[0], items[1], items[2], tuple(row_shape))
        keep_t = _as_keep(keep, ragged.num_items)
    else:
        if sequence is None:
            raise ValueError("pass sequence=True/False (or a spec) with a list of items")
        n = len(items)
        keep_flags = _as_keep(keep, n).tolist() if keep is not None else [True] * n
        # Drop before copying: only the kept items are joined (and moved to the device).
        kept_pos = [i for i, flag in enumerate(keep_flags) if flag]
        kept_items = [items[i] for i in kept_pos]
        item_dtype = spec.dtype if spec is not None else None
        if not kept_items and n:  # all dropped: shape and dtype from the first item
            row_shape = tuple(int(d) for d in (items[0].shape[1:] if sequence else items[0].shape))
            item_dtype = items[0].dtype
        ragged = ragged_from_items(
            kept_items, sequence=sequence, row_shape=row_shape, pin_memory=_pinned_ok(target), dtype=item_dtype
        )
        keep_t = torch.ones(len(kept_items), dtype=torch.bool)
        index_override = torch.tensor(kept_pos, dtype=torch.int64)

    flat = ragged.flat
    if target is not None and flat.device != target:
        flat = flat.to(target, non_blocking=flat.is_pinned())
    row_elems = ragged.row_elems
    if _use_ops(flat.device, use_ext):
        if buffer is not None:
            packed = _pack_into_buffer(buffer, flat, ragged, keep_t, row_elems, frame_stride, out_dtype,
                                       mean, std, max_steps)
        else:
            x, lengths, index = torch.ops.mosel.drop_and_pack(
                flat, ragged.offsets, ragged.lengths, keep_t, row_elems, frame_stride, out_dtype,
                mean, std, max_steps,
            )
            packed = PackedBatch(x, lengths, index, ragged.row_shape)
    else:
        packed = reference_drop_and_pack(
            flat, ragged.offsets, ragged.lengths, keep_t, row_elems, frame_stride, out_dtype, mean, std, max_steps
        )
        packed = PackedBatch(packed.x, packed.lengths, packed.index, ragged.row_shape)
    if index_override is not None:
        packed = PackedBatch(packed.x, packed.lengths, index_override.to(packed.x.device), ragged.row_shape)
    return packed


def _pack_into_buffer(buffer, flat, ragged, keep, row_elems, frame_stride, out_dtype, mean, std, max_steps):
    """drop_and_pack_into with x taken from `buffer`; the op re-checks everything."""
    if frame_stride < 1 or max_steps < 0 or row_elems < 1:
        raise ValueError(f"frame_stride, row_elems must be >= 1 and max_steps >= 0, got "
                         f"{frame_stride}, {row_elems}, {max_steps}")
    keep_flags = _as_keep(keep, ragged.num_items).tolist()
    all_lengths = _check_meta(ragged.lengths, "lengths", torch.int64, ragged.num_items, flat).tolist()
    kept_lengths = [max(0, n) for n, flag in zip(all_lengths, keep_flags) if flag]
    k = len(kept_lengths)
    if max_steps:
        steps = max_steps
    else:
        steps = max(((n + frame_stride - 1) // frame_stride for n in kept_lengths), default=0)
    x = buffer.take((k, steps, row_elems), out_dtype, flat.device)
    lengths = torch.empty(k, dtype=torch.int64, device=flat.device)
    index = torch.empty(k, dtype=torch.int64, device=flat.device)
    torch.ops.mosel.drop_and_pack_into(flat, ragged.offsets, ragged.lengths, keep, frame_stride, mean, std,
                                       x, lengths, index)
    return PackedBatch(x, lengths, index, ragged.row_shape)


def _check_type_only(*tensors) -> None:
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"expected a tensor, got {type(t).__name__}")


def scatter_back(
    src: torch.Tensor, index: torch.Tensor, num_requests: int, *, use_ext: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, D] embeddings of kept items -> (out [N, D] with zeros for dropped rows, present bool[N])."""
    _check_type_only(src, index)
    if _use_ops(src.device, use_ext):
        return tuple(torch.ops.mosel.scatter_back(src, index, int(num_requests)))
    return reference_scatter_back(src, index, num_requests)


def scatter_into(
    out: torch.Tensor,
    present: torch.Tensor,
    src: torch.Tensor,
    index: torch.Tensor,
    slot: int,
    *,
    use_ext: bool | None = None,
) -> None:
    """In place: out[index[k], slot] = src[k] (cast to out's dtype), present[index[k], slot] = True.
    Other rows are untouched (several partial batches may fill one slot)."""
    _check_type_only(out, present, src, index)
    if _use_ops(src.device, use_ext):
        torch.ops.mosel.scatter_back_into(out, present, src, index, int(slot))
    else:
        reference_scatter_into(out, present, src, index, slot)


def new_fusion_buffers(
    num_requests: int, num_modalities: int, dim: int, *, dtype: torch.dtype = torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed emb [N, M, D] and present bool [N, M] for scatter_into."""
    emb = torch.zeros(num_requests, num_modalities, dim, dtype=dtype, device=device)
    present = torch.zeros(num_requests, num_modalities, dtype=torch.bool, device=device)
    return emb, present
