"""Reference implementations of the mosel ops in plain torch: the fallback where the
C++ extension is unavailable, and what the tests compare the ops with. Same contract
as the ops (csrc/ops/*/<family>.cpp); ValueError for malformed input."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from mosel.ops.checks import check_index, check_pack_args, check_src
from mosel.ops.packed import PackedBatch


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
    keep_h, off_h, len_h, plain = check_pack_args(
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
    check_src(src)
    idx = check_index(index, num_requests, src.shape[0], src).to(src.device)
    out = src.new_zeros(num_requests, src.shape[1])
    present = torch.zeros(num_requests, dtype=torch.bool, device=src.device)
    out.index_copy_(0, idx, src)
    present[idx] = True
    return out, present


def reference_scatter_into(
    out: torch.Tensor, present: torch.Tensor, src: torch.Tensor, index: torch.Tensor, slot: int
) -> None:
    """out[index, slot] = src (cast to out's dtype); present[index, slot] = True."""
    check_src(src)
    check_src(out, "out", 3)
    if out.device != src.device or present.device != src.device:
        raise ValueError(f"out/present/src must share a device, got {out.device}/{present.device}/{src.device}")
    if out.shape[2] != src.shape[1]:
        raise ValueError(f"out [N, M, D] has D = {out.shape[2]} but src has D = {src.shape[1]}")
    if present.dtype != torch.bool or tuple(present.shape) != tuple(out.shape[:2]):
        raise ValueError(f"present must be bool {list(out.shape[:2])}, got {present.dtype} {list(present.shape)}")
    if not 0 <= slot < out.shape[1]:
        raise ValueError(f"slot {slot} is out of range for {out.shape[1]} modality slots")
    idx = check_index(index, out.shape[0], src.shape[0], src).to(src.device)
    out[idx, slot] = src.to(out.dtype)
    present[idx, slot] = True
