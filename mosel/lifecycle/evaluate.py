"""Held-out evaluation of a trained pack in every modality configuration (`mosel eval`).

Accuracy per configuration on the test split with a Wilson 95% interval. The result is
written as `accuracy.json` beside the checkpoint: the accuracy profile the profile store
reads. For AV-Digits, modalities are paired by class (AV-MNIST protocol), not by natural
co-occurrence; the test split's pairing and noise are fixed (TEST_SEED).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from typing import Any, Sequence

import numpy as np
import torch

from mosel.modalities import config_modalities
from mosel.models import checkpoint as ckpt
from mosel.lifecycle.train import _dataset_module, encode_all

Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct <= 0 else max(0.0, centre - half)
    hi = 1.0 if correct >= n else min(1.0, centre + half)
    return lo, hi


def evaluate(
    pack_name: str,
    home: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 128,
    write: bool = True,
) -> list[dict[str, Any]]:
    """Rows {configuration, modalities, n, correct, accuracy, ci_low, ci_high} for every
    configuration (largest first), on the held-out test split. Writes accuracy.json unless
    write=False. Raises CheckpointError if the model is not trained."""
    pack, encoders, head = ckpt.load_model(pack_name, home, device)
    data = _dataset_module(pack_name)
    split = data.build_split("test", data_dir=data_dir, frames=pack.frames)
    n = len(split)
    chunks = []
    with torch.inference_mode():
        for b in range(0, n, batch_size):
            idx = np.arange(b, min(n, b + batch_size))
            samples = {m: [split.items(m)[i] for i in idx] if m == "audio" else getattr(split, m)[idx]
                       for m in pack.modality_names}
            chunks.append(encode_all(pack, encoders, samples, device))
        emb = torch.cat(chunks)
        labels = torch.from_numpy(split.labels).to(emb.device)
        rows = []
        for config in pack.configurations():
            mods = config_modalities(config)
            present = torch.tensor([m in mods for m in pack.modality_names], device=emb.device).expand(n, -1)
            correct = int((head(emb, present).argmax(1) == labels).sum())
            lo, hi = wilson_interval(correct, n)
            rows.append({"configuration": config, "modalities": list(mods), "n": n, "correct": correct,
                         "accuracy": correct / n, "ci_low": lo, "ci_high": hi})
    if write:
        manifest = ckpt.load_manifest(pack_name, home)
        ckpt.write_json(
            ckpt.model_dir(pack_name, home) / ckpt.ACCURACY,
            {
                "model": pack_name,
                "checkpoint_sha256": manifest["checkpoint"]["sha256"],
                "split": "test",
                "data_split": data.split_description(),
                "confidence": 0.95,
                "interval": "wilson",
                "configurations": rows,
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            },
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Fixed-width table: configuration, n, accuracy, 95% CI."""
    width = max([len("configuration")] + [len(r["configuration"]) for r in rows])
    lines = [f"{'configuration':<{width}}  {'n':>5}  {'accuracy':>8}  {'95% CI':>15}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        ci = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        lines.append(f"{r['configuration']:<{width}}  {r['n']:>5}  {r['accuracy']:>8.3f}  {ci:>15}")
    return "\n".join(lines)
