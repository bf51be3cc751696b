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

This module is the public face: drop_and_pack is here, the rest is re-exported from the
modules that do each job (ragged inputs, the packed output and its buffer, scatter and
the fusion buffers, the reference ops); see mosel.ops.
"""

from __future__ import annotations

from typing import Sequence

import torch

from mosel.models.pack import TensorSpec
from mosel.ops.checks import as_keep, check_meta
from mosel.ops.dispatch import use_ops
from mosel.ops.packed import PackBuffer, PackedBatch
from mosel.ops.ragged import Item, Ragged, ragged_from_bytes, ragged_from_items
from mosel.ops.reference import reference_drop_and_pack, reference_scatter_back, reference_scatter_into
from mosel.ops.scatter import new_fusion_buffers, scatter_back, scatter_into

__all__ = [
    "Item", "PackBuffer", "PackedBatch", "Ragged", "drop_and_pack", "new_fusion_buffers",
    "ragged_from_bytes", "ragged_from_items", "reference_drop_and_pack", "reference_scatter_back",
    "reference_scatter_into", "scatter_back", "scatter_into",
]


def _pinned_ok(device: torch.device | None) -> bool:
    """Whether to stage CPU items in pinned memory: only worth it (and possible) for a GPU."""
    return device is not None and device.type == "cuda" and torch.cuda.is_available()


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
        keep_t = as_keep(keep, ragged.num_items)
    elif isinstance(items, tuple) and len(items) == 3 and all(isinstance(t, torch.Tensor) for t in items):
        if row_shape is None or -1 in row_shape:
            raise ValueError("a prepared (flat, offsets, lengths) batch needs row_shape (or a spec with a fixed row)")
        ragged = Ragged(items[0], items[1], items[2], tuple(row_shape))
        keep_t = as_keep(keep, ragged.num_items)
    else:
        if sequence is None:
            raise ValueError("pass sequence=True/False (or a spec) with a list of items")
        n = len(items)
        keep_flags = as_keep(keep, n).tolist() if keep is not None else [True] * n
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
    if use_ops(flat.device, use_ext):
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
    keep_flags = as_keep(keep, ragged.num_items).tolist()
    all_lengths = check_meta(ragged.lengths, "lengths", torch.int64, ragged.num_items, flat).tolist()
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
