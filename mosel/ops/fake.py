"""Fake ("meta") kernels of the mosel C++ ops, so that code calling `torch.ops.mosel.*`
can be traced by torch.compile (FakeTensors: shapes, dtypes and devices, no data).

Imported by `mosel.ops.extension` right after the library loads (the registrations
need the ops' schemas); the C++ schemas name this module (`m.set_python_module`), so
torch also imports it by itself where the library was loaded some other way.

drop_and_pack's output shape depends on data: K (the kept items) on `keep`, and L (the
longest kept item, unless `max_steps` > 0) on `lengths`. Its fake returns unbacked
sizes (`new_dynamic_size`); torch.compile(fullgraph=True) accepts them, otherwise set
`torch._dynamo.config.capture_dynamic_output_shape_ops = True`. The *_into ops only
write their out arguments (declared `Tensor(a!)` in the schemas), so their fakes
return nothing. Argument errors are left to the real kernels, which raise the same
ValueError when the compiled code runs.
"""

from __future__ import annotations

import torch


@torch.library.register_fake("mosel::drop_and_pack")
def _drop_and_pack(flat, offsets, lengths, keep, row_elems, frame_stride, out_dtype, mean, std, max_steps):
    ctx = torch.library.get_ctx()
    kept = ctx.new_dynamic_size()
    steps = max_steps if max_steps > 0 else ctx.new_dynamic_size()
    packed = flat.new_empty((kept, steps, row_elems), dtype=out_dtype)
    out_lengths = flat.new_empty((kept,), dtype=torch.int64)
    index = flat.new_empty((kept,), dtype=torch.int64)
    return packed, out_lengths, index


@torch.library.register_fake("mosel::drop_and_pack_into")
def _drop_and_pack_into(flat, offsets, lengths, keep, frame_stride, mean, std, packed, out_lengths, index):
    return None


@torch.library.register_fake("mosel::scatter_back")
def _scatter_back(src, index, num_requests):
    out = src.new_empty((num_requests, src.shape[1]))
    present = src.new_empty((num_requests,), dtype=torch.bool)
    return out, present


@torch.library.register_fake("mosel::scatter_back_into")
def _scatter_back_into(out, present, src, index, slot):
    return None
