"""Scattering the embeddings of the kept items back into request order: into a fresh
[N, D] tensor (`scatter_back`) or into one modality slot of the fusion buffers
(`new_fusion_buffers`, `scatter_into`). The C++ ops when available, else the reference."""

from __future__ import annotations

import torch

from mosel.ops.checks import check_tensors
from mosel.ops.dispatch import use_ops
from mosel.ops.reference import reference_scatter_back, reference_scatter_into


def scatter_back(
    src: torch.Tensor, index: torch.Tensor, num_requests: int, *, use_ext: bool | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, D] embeddings of kept items -> (out [N, D] with zeros for dropped rows, present bool[N])."""
    check_tensors(src, index)
    if use_ops(src.device, use_ext):
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
    check_tensors(out, present, src, index)
    if use_ops(src.device, use_ext):
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
