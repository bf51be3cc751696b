"""Random ragged inputs and a bit-exact comparison, shared by the op tests."""

from __future__ import annotations

import numpy as np
import torch


def random_values(rng: np.random.Generator, n: int, dtype: torch.dtype, specials: bool = False) -> torch.Tensor:
    if dtype == torch.uint8:
        return torch.from_numpy(rng.integers(0, 256, size=n, dtype=np.uint8))
    vals = (rng.standard_normal(n) * 30).astype(np.float32)
    if specials and n >= 8:
        where = rng.choice(n, size=min(n, 6), replace=False)
        vals[where] = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-30, 70000.0], dtype=np.float32)[: len(where)]
    return torch.from_numpy(vals).to(dtype)


def make_ragged(
    rng: np.random.Generator,
    n: int,
    row_elems: int,
    dtype: torch.dtype,
    max_len: int = 7,
    zero_prob: float = 0.2,
    specials: bool = False,
):
    """N items with random lengths (some zero) in a buffer with poison gaps between
    them and in shuffled order, so the op must honour offsets exactly."""
    lengths = [0 if rng.random() < zero_prob else int(rng.integers(1, max_len + 1)) for _ in range(n)]
    order = rng.permutation(n)
    pieces, offsets, pos = [], [0] * n, 0
    poison = 0xAB if dtype == torch.uint8 else float("nan")
    for i in order:
        gap = int(rng.integers(0, 3))
        pieces.append(torch.full((gap,), poison, dtype=dtype))
        pos += gap
        offsets[i] = pos
        size = lengths[i] * row_elems
        pieces.append(random_values(rng, size, dtype, specials))
        pos += size
    pieces.append(torch.full((int(rng.integers(0, 3)),), poison, dtype=dtype))
    flat = torch.cat(pieces) if pieces else torch.empty(0, dtype=dtype)
    return flat.contiguous(), torch.tensor(offsets, dtype=torch.int64), torch.tensor(lengths, dtype=torch.int64)


def random_keep(rng: np.random.Generator, n: int, mode: str) -> torch.Tensor:
    if mode == "all":
        return torch.ones(n, dtype=torch.bool)
    if mode == "none":
        return torch.zeros(n, dtype=torch.bool)
    return torch.from_numpy(rng.random(n) < 0.5)


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bitwise equality up to NaN payloads (NaN positions must match; signs of zeros too)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a, e = actual.cpu(), expected.cpu()
    if a.dtype == torch.uint8 or a.dtype == torch.int64 or a.dtype == torch.bool:
        assert torch.equal(a, e)
        return
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    assert torch.equal(nan_a, nan_e), "NaN positions differ"
    bits = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[a.dtype]
    ab, eb = a.view(bits)[~nan_a], e.view(bits)[~nan_e]
    if not torch.equal(ab, eb):
        bad = (ab != eb).nonzero()[:5].flatten()
        raise AssertionError(
            f"{int((ab != eb).sum())} elements differ, e.g. {a[~nan_a][bad].tolist()} vs {e[~nan_e][bad].tolist()}"
        )
