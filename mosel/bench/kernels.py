"""`mosel bench kernels`: the fused drop-and-pack op against the straightforward torch
chain and against a plain memory copy, measured side by side in one run.

Cases (about half of the requests dropped in each):
- video: 32 clips of 16 x 3 x 112 x 112 uint8 frames -> float32 (stride 1 and 2) and
  -> float16 (stride 1), normalised;
- audio: 32 log-mel float32 spectrograms of 50..100 x 40 steps -> float32, normalised.

Methods, timed round-robin (one call of each per repeat), median reported:
- chain:     pad_sequence over the per-request tensors, index_select of the kept rows,
             frame-stride slice, cast to float32, (x - mean) / std, zero the padding
             (mask), cast to the output dtype — what one writes without the op;
- op:        torch.ops.mosel.drop_and_pack on a prepared (flat, offsets, lengths) buffer;
- op_into:   torch.ops.mosel.drop_and_pack_into into a preallocated output (no allocation);
- list->op:  mosel.ops.batching.drop_and_pack from the same per-request list the chain gets
             (joins the kept items into one buffer first, then the op), into a reused
             PackBuffer as a serving loop would;
- clone / copy_: a plain copy of as many bytes as the op reads + writes, with / without
             allocating the destination.

Bandwidth = bytes read + written / time. The op is compared with clone (both allocate)
and op_into with copy_ (neither allocates).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from mosel.ops import batching, extension as ext
from mosel.tables import format_table


def register(sub) -> None:
    parser = sub.add_parser("kernels", help="fused drop-and-pack op vs the torch chain and memcpy")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per method and case (default 20)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch and the op (default: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


@dataclass
class Case:
    name: str
    items: list[torch.Tensor]  # per-request tensors [steps, *row] on the device
    keep: torch.Tensor  # bool [N], CPU
    stride: int
    out_dtype: torch.dtype
    mean: float
    std: float


def make_cases(device: torch.device, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    n = 32
    video = [torch.from_numpy(rng.integers(0, 256, size=(16, 3, 112, 112), dtype=np.uint8)) for _ in range(n)]
    audio = [torch.from_numpy((rng.standard_normal((int(rng.integers(50, 101)), 40)) * 4 - 20).astype(np.float32))
             for _ in range(n)]
    keep = torch.from_numpy(rng.permutation(n) < n // 2)  # exactly half kept, scattered
    video = [v.to(device) for v in video]
    audio = [a.to(device) for a in audio]
    return [
        Case("video u8->f32 stride 1", video, keep, 1, torch.float32, 114.5, 57.6),
        Case("video u8->f32 stride 2", video, keep, 2, torch.float32, 114.5, 57.6),
        Case("video u8->f16 stride 1", video, keep, 1, torch.float16, 114.5, 57.6),
        Case("audio f32->f32 stride 1", audio, keep, 1, torch.float32, -20.0, 4.0),
    ]


def torch_chain(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward version: pad everything, select, slice, cast, normalise, mask."""
    items = case.items
    device = items[0].device
    kept = torch.nonzero(case.keep).flatten().to(device)
    padded = pad_sequence(items, batch_first=True)  # [N, Lmax, *row]
    x = padded.index_select(0, kept)[:, :: case.stride]
    x = (x.to(torch.float32) - case.mean) / case.std
    steps = torch.tensor([it.shape[0] for it in items], device=device).index_select(0, kept)
    lengths = (steps + case.stride - 1) // case.stride
    mask = torch.arange(x.shape[1], device=device).unsqueeze(0) < lengths.unsqueeze(1)
    x = x * mask.view(*mask.shape, *([1] * (x.dim() - 2)))
    return x.to(case.out_dtype).flatten(2), lengths


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def timed(fn):
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return timed

    def timed(fn):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    return timed


def bench_case(case: Case, repeats: int, device: torch.device, use_ops: bool):
    ragged = batching.ragged_from_items([it.cpu() for it in case.items], sequence=True)
    flat = ragged.flat.to(device)
    row = ragged.row_elems
    ref = batching.reference_drop_and_pack(
        flat, ragged.offsets, ragged.lengths, case.keep, row, case.stride, case.out_dtype, case.mean, case.std
    )
    k, steps = ref.x.shape[0], ref.x.shape[1]
    in_size = flat.element_size()
    out_size = ref.x.element_size()
    bytes_read = int(ref.lengths.sum()) * row * in_size
    bytes_written = ref.x.numel() * out_size
    moved = bytes_read + bytes_written
    src = torch.empty(moved // 2, dtype=torch.uint8, device=device).random_(0, 256)
    dst = torch.empty_like(src)
    packed = torch.empty_like(ref.x)
    out_lengths = torch.empty(k, dtype=torch.int64, device=device)
    index = torch.empty(k, dtype=torch.int64, device=device)
    args = (flat, ragged.offsets, ragged.lengths, case.keep, row, case.stride, case.out_dtype, case.mean, case.std, 0)
    keep_list = case.keep.tolist()
    buffer = batching.PackBuffer()

    methods: dict[str, Callable[[], object]] = {"chain": lambda: torch_chain(case)}
    if use_ops:
        methods["op"] = lambda: torch.ops.mosel.drop_and_pack(*args)
        methods["op_into"] = lambda: torch.ops.mosel.drop_and_pack_into(
            flat, ragged.offsets, ragged.lengths, case.keep, case.stride, case.mean, case.std, packed, out_lengths, index
        )
        methods["list->op"] = lambda: batching.drop_and_pack(
            case.items, keep_list, sequence=True, frame_stride=case.stride, out_dtype=case.out_dtype,
            mean=case.mean, std=case.std, use_ext=True, buffer=buffer,
        )
    methods["clone"] = lambda: src.clone()
    methods["copy_"] = lambda: dst.copy_(src)

    # Correctness first: every method that packs must agree with the reference.
    chain_x, _ = torch_chain(case)
    diffs = [float((chain_x.float() - ref.x.float()).abs().max()) if k else 0.0]
    if use_ops:
        x, lens, idx = methods["op"]()
        assert torch.equal(lens.cpu(), ref.lengths.cpu()) and torch.equal(idx.cpu(), ref.index.cpu())
        diffs.append(float((x.float() - ref.x.float()).abs().max()) if k else 0.0)
        methods["op_into"]()
        diffs.append(float((packed.float() - ref.x.float()).abs().max()) if k else 0.0)

    timed = _timer(device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(2):  # warm-up
        for fn in methods.values():
            fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    med = {m: statistics.median(v) for m, v in times.items()}
    return med, moved, max(diffs), (k, steps, row)


def run(args) -> int:
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch sees no GPU: use --device cpu")
        return 2
    use_ops = ext.load_ops()
    if use_ops and device.type == "cuda" and not torch._C._dispatch_has_kernel_for_dispatch_key(
        "mosel::drop_and_pack", "CUDA"
    ):
        print("the mosel extension was built without CUDA kernels; timing the torch chain only")
        use_ops = False
    if not use_ops:
        print(f"mosel C++ ops unavailable ({ext.build_error()}); timing the torch chain and memcpy only")
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        def tqdm(x, **_):
            return x

    cases = make_cases(device, args.seed)
    time_rows, bw_rows = [], []
    for case in tqdm(cases, desc="kernels", unit="case"):
        med, moved, diff, shape = bench_case(case, args.repeats, device, use_ops)
        ms = {m: t * 1e3 for m, t in med.items()}
        gbs = {m: moved / t / 1e9 for m, t in med.items()}
        nan = float("nan")
        time_rows.append((
            case.name, "x".join(map(str, shape)), ms["chain"], ms.get("op", nan), ms.get("op_into", nan),
            ms.get("list->op", nan), ms["chain"] / ms["op"] if "op" in ms else nan,
            ms["chain"] / ms["list->op"] if "list->op" in ms else nan, diff,
        ))
        bw_rows.append((
            case.name, moved / 1e6, gbs.get("op", nan), gbs.get("op_into", nan), gbs["clone"], gbs["copy_"],
            gbs["op"] / gbs["clone"] if "op" in gbs else nan,
            gbs["op_into"] / gbs["copy_"] if "op_into" in gbs else nan,
        ))
    threads = torch.get_num_threads() if device.type == "cpu" else None
    where = f"{device.type}" + (f", {threads} threads" if threads else f", {torch.cuda.get_device_name(device)}")
    print(format_table(
        ["case", "K x L x row", "chain ms", "op ms", "op_into ms", "list->op ms", "speed-up", "speed-up list",
         "max |diff|"],
        time_rows,
        title=f"drop_and_pack, median of {args.repeats} ({where}); speed-up = chain / op",
    ))
    print()
    print(format_table(
        ["case", "MB moved", "op GB/s", "op_into GB/s", "clone GB/s", "copy_ GB/s", "op/clone", "op_into/copy_"],
        bw_rows,
        title="bandwidth: bytes read + written per second; memcpy moves the same number of bytes",
    ))
    return 0
