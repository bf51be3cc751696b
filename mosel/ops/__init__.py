"""The C++/CUDA extension's Python face: the fused drop-and-pack / scatter ops
(`torch.ops.mosel.*`, built from csrc/) with their pure-torch reference path.

Modules, by job:
- `batching`: the public face (drop_and_pack, and the names below re-exported, so
  callers import everything from `mosel.ops.batching`);
- `ragged`: ragged inputs (`Ragged`) from per-request items or raw wire bytes;
- `packed`: the packed output (`PackedBatch`) and its reusable memory (`PackBuffer`);
- `scatter`: embeddings back into request order and the fusion buffers;
- `reference`: the pure-torch reference ops (fallback, and what the tests compare with);
- `checks`: argument checks of the reference path;
- `dispatch`: choosing the C++ ops or the reference for a call;
- `extension`: building and loading the extension;
- `fake`: fake (meta) kernels of the ops for torch.compile, registered once it loads.
"""
