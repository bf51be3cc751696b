"""Data loaders (FSDD spoken digits, handwritten digits, the paired AV-Digits task) and
the training-side collate that packs items exactly as the serving batcher does."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mosel.models.pack import TensorSpec


def pack_items(items: Sequence[np.ndarray], spec: TensorSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack items per the contract in mosel.models.pack (frame stride 1).

    Each item is cast to float32, normalised as (value - spec.mean) / spec.std and laid
    out as [steps, row] (a non-sequence item is one step); items are zero-padded *after*
    normalisation to the longest. Returns (x float32[K, L, row], lengths int64[K]).
    Reference semantics for mosel.ops.batching.drop_and_pack with stride 1."""
    k = len(items)
    row = spec.row_elems
    if isinstance(items, np.ndarray) and k and items.ndim == len(spec.shape) + 1:
        # equal-sized items stacked in one array: same result, vectorised
        steps_each = int(items.shape[1]) if spec.sequence else 1
        arr = items.reshape(k, steps_each, row).astype(np.float32)
        x = (arr - np.float32(spec.mean)) / np.float32(spec.std)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.full((k,), steps_each, dtype=torch.int64)
    steps = [int(it.shape[0]) if spec.sequence else 1 for it in items]
    longest = max(steps) if steps else 0
    x = np.zeros((k, longest, row), dtype=np.float32)
    mean, std = np.float32(spec.mean), np.float32(spec.std)
    for i, it in enumerate(items):
        arr = np.asarray(it).astype(np.float32, copy=False).reshape(steps[i], row)
        x[i, : steps[i]] = (arr - mean) / std
    return torch.from_numpy(x), torch.tensor(steps, dtype=torch.int64)
