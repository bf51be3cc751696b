"""A TVLT-shaped joint-fusion transformer, for latency only (random weights).

The paper's model is TVLT (ViT-Base sized): 12 encoder layers, 768 wide, 12 heads, MLP 3072,
over the concatenated tokens of the kept modalities: video 8 frames x 196 patches = 1568
tokens, audio up to 1020 tokens. Its cost is set by the architecture, not by the weights, so a
randomly initialised model of the same shape gives TVLT's latency on a device ("latency by
architecture"). Accuracy is NOT measured here (the paper's published numbers are used).

Per configuration ("audio+video", "audio", "video") the input is a batch of b sequences of
T_c tokens of width 768 (patch embedding is a cheap linear layer, included), through the 12
layers, then mean pooling and a 2-way head.

`profile_tvlt(device, batch_sizes, repeats)` times forwards under torch.inference_mode and
returns a latency table per configuration for b = 0..32 (ms, L(0) = 0):
- on CUDA every b in `batch_sizes` (default 1..32) is measured (median of `repeats`, after
  warm-up, synchronised);
- on CPU a forward at b = 32 over 2588 tokens takes minutes, so only a few small b are
  measured (default 1 and 2) and the table is a least-squares line L(b) = a + s * b per
  configuration (clamped so L(b) >= L(1)*... is monotone), labelled
  "measured at b in {1, 2}, linear extrapolation". CPU compute is close to linear in b
  (little batching gain), so the line is a fair model; it ignores cache effects.
`layers` < 12 measures a shallower stack and scales by 12 / layers (the layers are identical;
used by `mosel bench paper --quick` to stay CI-sized; labelled as such).
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

TOKENS = {"audio": 1020, "video": 1568}
CONFIGURATIONS = ("audio+video", "audio", "video")
WIDTH = 768
DEPTH = 12
HEADS = 12
MLP = 3072
PATCH_DIM = 768  # 16x16x3 video patches; audio patches 16x16x1 are padded to the same width here
MAX_BATCH = 32


def config_tokens(configuration: str) -> int:
    return sum(TOKENS[m] for m in configuration.split("+"))


class TVLTShaped(nn.Module):
    """Patch embedding + modality embeddings + 12 pre-norm encoder layers + pooled head."""

    def __init__(self, depth: int = DEPTH, width: int = WIDTH, heads: int = HEADS, mlp: int = MLP):
        super().__init__()
        self.embed = nn.Linear(PATCH_DIM, width)
        self.modality = nn.Parameter(torch.zeros(2, width))
        layer = nn.TransformerEncoderLayer(width, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 2)

    def forward(self, audio: torch.Tensor | None, video: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if audio is not None:
            parts.append(self.embed(audio) + self.modality[0])
        if video is not None:
            parts.append(self.embed(video) + self.modality[1])
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        x = self.encoder(x)
        return self.head(self.norm(x.mean(dim=1)))


def parameter_count(depth: int = DEPTH) -> int:
    return sum(p.numel() for p in TVLTShaped(depth).parameters())


def _inputs(configuration: str, b: int, device: torch.device, dtype: torch.dtype):
    mods = configuration.split("+")
    audio = torch.randn(b, TOKENS["audio"], PATCH_DIM, device=device, dtype=dtype) if "audio" in mods else None
    video = torch.randn(b, TOKENS["video"], PATCH_DIM, device=device, dtype=dtype) if "video" in mods else None
    return audio, video


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class TVLTProfile:
    """A JointCost-style latency table per configuration (ms, index = batch size 0..32)."""

    device: str
    device_name: str
    dtype: str
    layers_measured: int
    measured_batches: list[int]
    measured_ms: dict[str, dict[int, float]]  # configuration -> b -> median ms (scaled to 12 layers)
    latency_ms: dict[str, list[float]]  # configuration -> [L(0), ..., L(32)]
    method: str
    fit: dict[str, dict[str, float]] = field(default_factory=dict)  # configuration -> {a, s}
    profile_s: float = 0.0

    @property
    def label(self) -> str:
        return self.method

    def cost(self):
        from mosel.planning.costs import JointCost

        return JointCost(self.latency_ms, modalities=("audio", "video"))

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "device_name": self.device_name, "dtype": self.dtype,
                "layers_measured": self.layers_measured, "measured_batches": list(self.measured_batches),
                "measured_ms": {c: {str(b): v for b, v in d.items()} for c, d in self.measured_ms.items()},
                "latency_ms": {c: list(v) for c, v in self.latency_ms.items()}, "method": self.method,
                "fit": self.fit, "profile_s": self.profile_s,
                "architecture": {"depth": DEPTH, "width": WIDTH, "heads": HEADS, "mlp": MLP, "tokens": dict(TOKENS),
                                 "parameters": parameter_count()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TVLTProfile":
        return cls(d["device"], d["device_name"], d["dtype"], int(d["layers_measured"]),
                   [int(b) for b in d["measured_batches"]],
                   {c: {int(b): float(v) for b, v in m.items()} for c, m in d["measured_ms"].items()},
                   {c: [float(x) for x in v] for c, v in d["latency_ms"].items()}, d["method"], d.get("fit", {}),
                   float(d.get("profile_s", 0.0)))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def linear_fit(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares L(b) = a + s*b over the measured points (one point: a = 0)."""
    bs = sorted(points)
    if len(bs) == 1:
        return 0.0, points[bs[0]] / bs[0]
    mb = statistics.fmean(bs)
    ml = statistics.fmean(points[b] for b in bs)
    sxx = sum((b - mb) ** 2 for b in bs)
    s = sum((b - mb) * (points[b] - ml) for b in bs) / sxx
    return ml - s * mb, s


def profile_tvlt(device: str = "cpu", batch_sizes: Sequence[int] | None = None, repeats: int | None = None,
                 dtype: str | None = None, layers: int = DEPTH, configurations: Sequence[str] = CONFIGURATIONS,
                 max_batch: int = MAX_BATCH, progress=None) -> TVLTProfile:
    """Time TVLT-shaped forwards per configuration; see the module doc for CPU vs CUDA."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA requested but not available")
    on_cuda = dev.type == "cuda"
    batch_sizes = sorted(set(batch_sizes or (range(1, max_batch + 1) if on_cuda else (1, 2))))
    repeats = repeats or (5 if on_cuda else 1)
    dtype = dtype or ("fp16" if on_cuda else "bf16")
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if not 1 <= layers <= DEPTH:
        raise ValueError(f"layers must be in 1..{DEPTH}")
    started = time.perf_counter()
    torch.manual_seed(0)
    model = TVLTShaped(depth=layers).to(dev, torch_dtype).eval()
    scale = DEPTH / layers
    measured: dict[str, dict[int, float]] = {c: {} for c in configurations}
    with torch.inference_mode():
        # warm-up: one small forward per configuration (allocator, kernels)
        for c in configurations:
            model(*_inputs(c, 1, dev, torch_dtype))
        _sync(dev)
        for c in configurations:
            for b in batch_sizes:
                inputs = _inputs(c, b, dev, torch_dtype)
                if on_cuda:
                    model(*inputs)
                times = []
                for _ in range(repeats):
                    _sync(dev)
                    t = time.perf_counter()
                    model(*inputs)
                    _sync(dev)
                    times.append((time.perf_counter() - t) * 1000.0)
                measured[c][b] = round(statistics.median(times) * scale, 3)
                if progress:
                    progress(c, b, measured[c][b])
    fit: dict[str, dict[str, float]] = {}
    table: dict[str, list[float]] = {}
    extrapolated = set(range(1, max_batch + 1)) - set(batch_sizes)
    for c in configurations:
        a, s = linear_fit(measured[c])
        fit[c] = {"a_ms": a, "s_ms_per_request": s}
        row = [0.0]
        for b in range(1, max_batch + 1):
            v = measured[c][b] if b in measured[c] else a + s * b
            row.append(round(max(v, row[-1], 1e-3), 3))  # monotone, positive
        table[c] = row
    where = "{" + ", ".join(str(b) for b in batch_sizes) + "}"
    method = f"measured at b in {where}"
    if extrapolated:
        method += ", linear extrapolation (least-squares L(b) = a + s*b per configuration)"
    if layers != DEPTH:
        method += f"; {layers} of {DEPTH} layers measured, scaled x{scale:g}"
    method += f"; {dtype}, torch.inference_mode, median of {repeats}"
    return TVLTProfile(device=str(dev), device_name=_device_name(dev), dtype=dtype, layers_measured=layers,
                       measured_batches=list(batch_sizes), measured_ms=measured, latency_ms=table, method=method,
                       fit=fit, profile_s=time.perf_counter() - started)


def main() -> None:  # python -m mosel.models.tvlt.latency [cpu|cuda]
    import sys

    dev = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    prof = profile_tvlt(dev, progress=lambda c, b, ms: print(f"{c:>12} b={b:>2} {ms:10.1f} ms", flush=True))
    print(prof.method, f"({prof.profile_s:.1f} s)")
    for c, row in prof.latency_ms.items():
        print(f"{c:>12}: b=1 {row[1]:.1f} ms, b=8 {row[8]:.1f} ms, b=32 {row[32]:.1f} ms")
    if math.isnan(sum(prof.latency_ms["audio"])):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
