"""Latency of exported artifacts against the eager modules of a trained model pack.

`compare_latency` loads a trained pack (mosel.models.checkpoint.load_model), exports each
encoder and the fusion head to `.pt2` (torch.export) and `.pt` (TorchScript, scripted) in a
temporary directory with mosel.repository.artifacts, loads them back as serving does, and
times one forward call of each variant on real test items (the pack's `test_samples`),
packed with mosel.ops.batching.drop_and_pack as mosel.encoder.runner does (packing is not
timed: only the module call, under torch.inference_mode). Variants are timed round-robin
(one call of each per repeat, the order rotating) on one torch thread; the median is
reported. The fusion head runs on the eager encoders' embeddings with every modality present.

Exported `.pt2` graphs always take the shape-static path of the AV-Digits encoders: the
video encoder runs its frame CNN on every frame, padded ones included, where eager and
TorchScript run it on the valid frames only. Video test clips all have the pack's number of
frames, so the timed video batches carry no padding (audio batches do: clips vary in length).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from mosel.models.checkpoint import load_model
from mosel.ops import batching
from mosel.repository.artifacts import export_encoder, export_fusion_head, load_artifact

VARIANTS = ("eager", "pt2", "torchscript")
_SUFFIX = {"pt2": ".pt2", "torchscript": ".pt"}


@dataclass
class LatencyRow:
    module: str  # modality name or "fusion_head"
    batch: int
    steps: int  # L of the packed batch (1 for a non-sequence modality and the head)
    eager_ms: float
    pt2_ms: float
    torchscript_ms: float
    max_abs_diff: float  # largest |artifact - eager| over both artifacts

    @property
    def pt2_speedup(self) -> float:
        return self.eager_ms / self.pt2_ms

    @property
    def torchscript_speedup(self) -> float:
        return self.eager_ms / self.torchscript_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "pt2_speedup": self.pt2_speedup, "torchscript_speedup": self.torchscript_speedup}


def _time_round_robin(calls: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median ms per call of each callable, interleaved with a rotating order."""
    names = list(calls)
    with torch.inference_mode():
        for _ in range(warmup):
            for name in names:
                calls[name]()
        samples: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                calls[name]()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def _max_diff(modules: dict[str, torch.nn.Module], args: tuple) -> float:
    with torch.inference_mode():
        want = modules["eager"](*args)
        return max(float((modules[v](*args) - want).abs().max()) for v in VARIANTS if v != "eager")


def markdown_table(rows: Sequence[LatencyRow], title: str = "") -> str:
    head = ["module", "batch", "L", "eager ms", "pt2 ms", "TorchScript ms", "pt2 speed-up", "TorchScript speed-up",
            "max abs diff"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [r.module, str(r.batch), str(r.steps), f"{r.eager_ms:.3f}", f"{r.pt2_ms:.3f}", f"{r.torchscript_ms:.3f}",
                 f"{r.pt2_speedup:.2f}x", f"{r.torchscript_speedup:.2f}x", f"{r.max_abs_diff:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_latency(
    pack_name: str = "av-digits",
    preset: str | None = None,
    home: str | os.PathLike | None = None,
    repeats: int = 50,
    batches: Sequence[int] = (1, 32),
    warmup: int = 5,
    threads: int = 1,
    data_dir: str | os.PathLike | None = None,
) -> tuple[list[LatencyRow], str]:
    """Eager vs pt2 vs TorchScript latency per encoder (and the fusion head) of the trained
    `pack_name` in `home`, at each batch size in `batches`. Returns (rows, markdown table).

    `preset`, when given, must be the size preset the model was trained with (ValueError
    otherwise); the table's title names the preset actually measured."""
    if repeats < 1 or not batches or min(batches) < 1:
        raise ValueError("repeats and every batch size must be >= 1")
    pack, encoders, head = load_model(pack_name, home)
    trained = pack.size.get("preset")
    if preset is not None and trained != preset:
        raise ValueError(f"the trained {pack_name!r} model in this home is preset {trained!r}, not {preset!r}; "
                         f"train it with `mosel train --model {pack_name} --size {preset}`")
    largest = max(batches)
    samples = pack.test_samples(data_dir=data_dir, limit=largest)
    if len(samples) < largest:
        raise ValueError(f"{pack_name!r} has only {len(samples)} test samples; batch {largest} needs more")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[LatencyRow] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mosel-artifacts-") as tmp:
            folder = Path(tmp)
            for m in pack.modality_names:
                spec = pack.modality(m).spec
                modules = {"eager": encoders[m]}
                for fmt, suffix in _SUFFIX.items():
                    path = folder / f"{m}{suffix}"
                    export_encoder(encoders[m], spec, path, max_batch=largest, format=fmt)
                    modules[fmt] = load_artifact(path, m).eval()
                for b in batches:
                    packed = batching.drop_and_pack([s[0][m] for s in samples[:b]], spec=spec)
                    args = (packed.x, packed.lengths)
                    calls = {v: (lambda mod=modules[v]: mod(*args)) for v in VARIANTS}
                    ms = _time_round_robin(calls, repeats, warmup)
                    rows.append(LatencyRow(m, b, int(packed.x.shape[1]), ms["eager"], ms["pt2"], ms["torchscript"],
                                           _max_diff(modules, args)))
            names = pack.modality_names
            modules = {"eager": head}
            for fmt, suffix in _SUFFIX.items():
                path = folder / f"fusion_head{suffix}"
                export_fusion_head(head, len(names), pack.embed_dim, path, max_batch=largest, format=fmt)
                modules[fmt] = load_artifact(path, "fusion_head").eval()
            for b in batches:
                with torch.inference_mode():
                    embs = []
                    for m in names:
                        packed = batching.drop_and_pack([s[0][m] for s in samples[:b]], spec=pack.modality(m).spec)
                        embs.append(encoders[m](packed.x, packed.lengths))
                args = (torch.stack(embs, dim=1), torch.ones(b, len(names), dtype=torch.bool))
                calls = {v: (lambda mod=modules[v]: mod(*args)) for v in VARIANTS}
                ms = _time_round_robin(calls, repeats, warmup)
                rows.append(LatencyRow("fusion_head", b, 1, ms["eager"], ms["pt2"], ms["torchscript"],
                                       _max_diff(modules, args)))
    finally:
        torch.set_num_threads(old_threads)
    title = (f"{pack_name} (preset {trained}): median of {repeats} interleaved calls, {threads} torch "
             f"thread{'s' if threads != 1 else ''}, torch {torch.__version__}")
    return rows, markdown_table(rows, title)


def register(sub) -> None:
    p = sub.add_parser("artifacts", help="exported encoders (.pt2, TorchScript) vs the trained pack's own modules")
    p.add_argument("--model", default="av-digits", help="trained pack (default av-digits)")
    p.add_argument("--size", default=None, help="size preset the pack was trained with (checked, not trained)")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per variant and batch size (default 100)")
    p.add_argument("--home", default=None, help="state directory with the trained pack (default $MOSEL_HOME)")
    p.add_argument("--out", default=None, help="write artifacts.md here")
    p.set_defaults(func=run)


def run(args) -> int:
    from mosel.models.checkpoint import CheckpointError

    try:
        _, table = compare_latency(args.model, preset=args.size, home=args.home, repeats=args.repeats)
    except (CheckpointError, ValueError) as exc:
        print(f"mosel bench artifacts: {exc}")
        return 2
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "artifacts.md").write_text(table + "\n")
    return 0
