"""torch.compile over the mosel ops: functions calling `torch.ops.mosel.*` compile with
fullgraph=True thanks to the fake kernels of mosel.ops.fake, and give bit for bit the
eager results (mutated out arguments included); torch.library.opcheck checks schemas,
alias annotations and fakes against the real kernels.

Without the fakes of drop_and_pack and scatter_back these tests fail (dynamo cannot
trace an op with no fake kernel). Skipped only where the extension cannot be built."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosel.ops import extension as ext
from tests.ops.cases import assert_same, make_ragged, random_keep

OPS = [op for ops in ext.OP_FAMILIES.values() for op in ops]
BACKENDS = ["eager", "aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
ROW = 12


@pytest.fixture(scope="module")
def ops():
    if not ext.load_ops():
        pytest.skip(f"the mosel extension cannot be built here: {ext.build_error()}")
    return torch.ops.mosel


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def pack_and_scatter(flat, offsets, lengths, keep, num_requests: int, max_steps: int):
    """drop_and_pack (data-dependent K, and L unless max_steps), torch ops on its output,
    scatter_back into request order."""
    x, out_lengths, index = torch.ops.mosel.drop_and_pack(
        flat, offsets, lengths, keep, ROW, 2, torch.float16, 127.5, 58.25, max_steps
    )
    emb = x.float().sum(dim=1) * 0.5
    out, present = torch.ops.mosel.scatter_back(emb, index, num_requests)
    return x, out_lengths, index, out, present


def pack_and_scatter_into(flat, offsets, lengths, keep, packed, out_lengths, index, emb, present, src, rows):
    """The *_into ops, writing only their out arguments, then a read of what they wrote."""
    torch.ops.mosel.drop_and_pack_into(flat, offsets, lengths, keep, 1, -1.5, 3.0, packed, out_lengths, index)
    torch.ops.mosel.scatter_back_into(emb, present, src, rows, 1)
    return packed.sum(dim=2), emb.sum(dim=2)


def _batch(seed: int, n: int = 7):
    rng = np.random.default_rng(seed)
    flat, offsets, lengths = make_ragged(rng, n, ROW, torch.uint8)
    return flat, offsets, lengths, random_keep(rng, n, "some")


def test_every_op_has_a_fake_kernel(ops):
    for name in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"mosel::{name}", "Meta"), name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_steps", [0, 3])
def test_compiled_pack_and_scatter_matches_eager(ops, backend, max_steps):
    compiled = torch.compile(pack_and_scatter, fullgraph=True, backend=backend)
    # Several batches through one compiled function: K (and L) differ between them, so
    # the sizes must stay symbolic rather than be baked in by the first call.
    for seed in (0, 1, 2):
        flat, offsets, lengths, keep = _batch(seed)
        want = pack_and_scatter(flat, offsets, lengths, keep, 7, max_steps)
        got = compiled(flat, offsets, lengths, keep, 7, max_steps)
        for g, w in zip(got, want):
            assert_same(g, w)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_into_ops_match_eager(ops, backend):
    flat, offsets, lengths, keep = _batch(3, n=9)
    kept = int(keep.sum())
    src = torch.arange(4 * ROW, dtype=torch.float32).view(4, ROW)

    def fresh_args():
        # poisoned / partly filled outputs: every element the op writes must match
        return (flat, offsets, lengths, keep, torch.full((kept, 5, ROW), float("nan")),
                torch.full((kept,), -7), torch.full((kept,), -7),
                torch.full((9, 2, ROW), 2.0, dtype=torch.bfloat16), torch.zeros(9, 2, dtype=torch.bool),
                src, torch.tensor([8, 0, 3, 5]))

    eager_args, compiled_args = fresh_args(), fresh_args()
    want = pack_and_scatter_into(*eager_args)
    got = torch.compile(pack_and_scatter_into, fullgraph=True, backend=backend)(*compiled_args)
    for g, w in zip(got, want):
        assert_same(g, w)
    for g, w in zip(compiled_args, eager_args):  # the mutations happened, exactly once
        assert_same(g, w)


def _opcheck_cases():
    flat, offsets, lengths, keep = _batch(4)
    kept = int(keep.sum())
    src = torch.randn(3, ROW, generator=torch.Generator().manual_seed(0))
    rows = torch.tensor([6, 0, 2])
    return {
        "drop_and_pack": (flat, offsets, lengths, keep, ROW, 2, torch.float32, 1.5, 3.0, 0),
        "drop_and_pack max_steps": (flat, offsets, lengths, keep, ROW, 1, torch.bfloat16, 0.0, 2.0, 4),
        "drop_and_pack_into": (flat, offsets, lengths, keep, 3, 0.5, 2.0, torch.empty(kept, 2, ROW),
                               torch.empty(kept, dtype=torch.int64), torch.empty(kept, dtype=torch.int64)),
        "scatter_back": (src, rows, 7),
        "scatter_back_into": (torch.zeros(7, 2, ROW, dtype=torch.float16), torch.zeros(7, 2, dtype=torch.bool),
                              src, rows, 0),
    }


@pytest.mark.parametrize("case", list(_opcheck_cases()))
def test_opcheck(ops, case):
    args = _opcheck_cases()[case]
    op = getattr(ops, case.split()[0]).default
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result
