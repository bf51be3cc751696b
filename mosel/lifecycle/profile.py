"""Latency profiler: per-encoder and fusion-head latency by batch size (docs/architecture.md, "Cost models").

`profile_latency` measures a trained late-fusion model the way it is served:

- Each encoder runs in process through `mosel.encoder.runner.EncoderRunner.encode`, the exact
  path of the encoder service (fused drop-and-pack, then the encoder forward; on CUDA the
  runner synchronises before it returns). Inputs are real held-out test items of that
  modality (`pack.test_samples`), so sequence lengths, and therefore padding, are realistic;
  a batch of n uses the first n items.
- The fusion head runs as the selection service runs it: on the CPU in fp32, softmax
  included, on a [n, M, D] embedding block with every modality present (the head's cost
  does not depend on which are present).
- For every batch size n = 1..max_batch (every one is measured: the store needs 0..max_batch)
  `warmup` untimed runs, then `repeats` timed runs with time.perf_counter; the median and the
  95th percentile (linear interpolation) in ms are stored. Index 0 is 0 (empty batch).

Cost: runs = (warmup + repeats) x max_batch x (encoders + head). The defaults (warmup 2,
repeats 7) keep fp32 at max_batch 32 for the default AV-Digits model well under a minute on
two CPU cores; raise `repeats` on a quiet machine for tighter p95s.

Placement: the profile records how the encoders will be deployed. "shared" (default): all
encoders on one device, so a job's encoder latencies add up; "separate": one device each,
the busiest encoder bounds the job. The measurement is the same; the placement only tells
the solver how to combine the series (mosel.planning.costs.LateFusionCost).

Precisions: fp32 always; fp16 and bf16 where the device runs them. `probe_precision` tries
one real item through every encoder at that precision (CPU: bf16 works with recent torch,
fp16 depends on the build); the profile command reports which precisions ran.
"""

from __future__ import annotations

import gc
import statistics
import time
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

import mosel
from mosel.models.checkpoint import checkpoint_sha256, code_version
from mosel.repository.source import OpenedModel, open_model
from mosel.tables import format_table
from mosel.protocol.v1 import profile_store_pb2 as ps

PRECISIONS = ("fp32", "fp16", "bf16")
PLACEMENTS = ("shared", "separate")
DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 7
TABLE_BATCHES = (1, 2, 4, 8, 16, 32)


def code_version_string() -> str:
    """'0.1.0+<git commit>' ('0.1.0' outside a git checkout)."""
    version = code_version()
    commit = version.get("git_commit", "unknown")
    return version["mosel"] if commit in ("", "unknown") else f"{version['mosel']}+{commit}"


@contextmanager
def _quiet_gc():
    """No garbage collection pauses inside timed runs."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _time_ms(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def _stats(samples: Sequence[float]) -> tuple[float, float]:
    return float(statistics.median(samples)), float(np.percentile(samples, 95))


def _test_items(pack, count: int, data=None) -> dict[str, list[np.ndarray]]:
    """At least `count` real wire-ready items per modality (cycled if the set is smaller): from
    `data` (a labelled set, see mosel.repository.data) when given, else the pack's test split,
    else -- a repository model brings no data -- random items at the longest sequence length,
    which profiles the worst case rather than the typical one."""
    from mosel.encoder.runner import synthetic_item

    if data is not None:
        items = {m: list(data.items(m)[:count]) for m in pack.modality_names}
    else:
        try:
            samples = pack.test_samples(limit=count)
        except NotImplementedError:
            rng = np.random.default_rng(0)
            samples = [({m.name: synthetic_item(m.spec, rng, steps=m.spec.max_steps or None)
                         for m in pack.modalities}, 0) for _ in range(count)]
        if not samples:
            raise RuntimeError(f"model {pack.name!r} has no test samples to profile with")
        items = {m: [inputs[m] for inputs, _ in samples] for m in pack.modality_names}
    for m, lst in items.items():
        while len(lst) < count:
            lst.extend(lst[: count - len(lst)])
    return items


def probe_precision(model: str, precision: str, device: str = "cpu", home=None,
                    opened: OpenedModel | None = None) -> tuple[bool, str]:
    """(runs, why): whether every encoder of `model` runs at `precision` on `device`.

    fp32 always runs. Otherwise one synthetic item goes through each encoder; an error or a
    non-finite embedding means the precision is not usable there."""
    from mosel.encoder.runner import EncoderRunner, synthetic_item

    if precision not in PRECISIONS:
        return False, f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}"
    if precision == "fp32":
        return True, "fp32 always runs"
    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return False, f"{torch.cuda.get_device_name(torch.device(device))} does not support bf16"
    opened = opened or open_model(model, home=home)
    rng = np.random.default_rng(0)
    for m in opened.manifest["modalities"]:
        try:
            runner = EncoderRunner(model, m["name"], device=device, precision=precision, max_batch=2, opened=opened)
            out = runner.encode([synthetic_item(runner.spec, rng) for _ in range(2)]).embeddings
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return False, f"{m['name']} encoder fails at {precision} on {device}: {first}"
        if not np.isfinite(out).all():
            return False, f"{m['name']} encoder gives non-finite embeddings at {precision} on {device}"
    return True, f"{precision} runs on {device}"


def profile_latency(
    model: str,
    home=None,
    device: str = "cpu",
    precision: str = "fp32",
    max_batch: int = 32,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    progress: bool = True,
    placement: str = "shared",
    threads: int = 1,
    opened: OpenedModel | None = None,
    data=None,
) -> ps.LatencyProfile:
    """Measure `model`'s encoders and fusion head for batch sizes 1..max_batch (see module doc).

    `threads`: torch intra-op threads while measuring; match the services' --threads
    (default 1) so the profile predicts what they will do.

    Returns a LatencyProfile ready for ProfileStoreClient.put_latency_profile."""
    from mosel.encoder.runner import EncoderRunner

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if int(warmup) < 0 or int(repeats) < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    max_batch, warmup, repeats = int(max_batch), int(warmup), int(repeats)

    opened = opened or open_model(model, home=home)
    manifest = opened.manifest
    modalities = [m["name"] for m in manifest["modalities"]]
    runners = {m: EncoderRunner(model, m, device=device, precision=precision, max_batch=max_batch, opened=opened)
               for m in modalities}
    max_batch = min(r.max_batch for r in runners.values())
    pack = opened.pack
    items = _test_items(pack, max_batch, data)
    head = opened.fusion_head("cpu")

    from tqdm import tqdm

    bar = tqdm(total=max_batch * (len(modalities) + 1), desc=f"profile {model} {device} {precision}",
               unit="size", disable=not progress, leave=False)
    series = []
    try:
        with _quiet_gc(), _torch_threads(threads):
            for m in modalities:
                runner = runners[m]
                median, p95 = [0.0], [0.0]
                for n in range(1, max_batch + 1):
                    bar.set_postfix_str(f"{m} b={n}")
                    batch = items[m][:n]
                    samples = _time_ms(lambda: runner.encode(batch), warmup, repeats)
                    med, hi = _stats(samples)
                    median.append(med)
                    p95.append(hi)
                    bar.update(1)
                series.append(ps.LatencySeries(unit=m, median_ms=median, p95_ms=p95))

            head_ms = [0.0]
            gen = torch.Generator().manual_seed(0)
            for n in range(1, max_batch + 1):
                bar.set_postfix_str(f"head b={n}")
                emb = torch.randn(n, len(modalities), pack.embed_dim, generator=gen)
                present = torch.ones(n, len(modalities), dtype=torch.bool)

                def run_head():
                    with torch.inference_mode():
                        torch.softmax(head(emb, present), dim=-1).numpy()

                head_ms.append(_stats(_time_ms(run_head, warmup, repeats))[0])
                bar.update(1)
    finally:
        bar.close()

    first = next(iter(runners.values()))
    return ps.LatencyProfile(
        model=model,
        cost_model="late_fusion",
        placement=placement,
        max_batch=max_batch,
        series=series,
        head_ms=head_ms,
        device=str(first.device),
        device_name=first.device_name,
        precision=precision,
        warmup=warmup,
        repeats=repeats,
        code_version=code_version_string(),
        checkpoint_sha256=checkpoint_sha256(manifest),
    )


@contextmanager
def _torch_threads(threads: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def format_profile(profile: ps.LatencyProfile, batches: Sequence[int] = TABLE_BATCHES, p95: bool = False) -> str:
    """Median (or p95) ms per batch size: rows = batch sizes, columns = units + head (+ total)."""
    sizes = [b for b in batches if b <= profile.max_batch]
    if profile.max_batch not in sizes:
        sizes.append(profile.max_batch)
    units = [s.unit for s in profile.series]
    late = profile.cost_model == "late_fusion"
    headers = ["batch", *units]
    if profile.head_ms:
        headers.append("head")
    if late:
        headers.append("all (shared)" if profile.placement == "shared" else "all (separate)")
    rows = []
    for b in sizes:
        values = [float((s.p95_ms if p95 and s.p95_ms else s.median_ms)[b]) for s in profile.series]
        row: list[object] = [b, *values]
        head = float(profile.head_ms[b]) if profile.head_ms else 0.0
        if profile.head_ms:
            row.append(head)
        if late:
            row.append((sum(values) if profile.placement == "shared" else max(values)) + head)
        rows.append(row)
    what = "p95" if p95 else "median"
    title = (f"{profile.model} latency, {what} ms ({profile.cost_model}, {profile.device} "
             f"[{profile.device_name}], {profile.precision}, warmup {profile.warmup}, repeats {profile.repeats})")
    return format_table(headers, rows, title=title)
