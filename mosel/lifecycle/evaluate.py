"""Held-out evaluation of a trained pack in every modality configuration (`mosel eval`).

Accuracy per configuration on the test split with a Wilson 95% interval. The result is
written as `accuracy.json` beside the checkpoint: the accuracy profile the profile store
reads. The test split is the pack's `dataset("test", seed=0)` hook (fixed for a pack);
how it was built (for instance a pairing protocol) is the pack's `data_description()`,
recorded in accuracy.json.
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
from mosel.lifecycle.train import batch_items, encode_all

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


def configuration_accuracy(pack, head, emb: torch.Tensor, labels) -> list[dict[str, Any]]:
    """Rows {configuration, modalities, n, correct, accuracy, ci_low, ci_high}, largest first,
    from the embeddings `emb` [N, M, D] of N labelled samples."""
    n = int(emb.shape[0])
    target = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(emb.device)
    rows = []
    with torch.inference_mode():
        for config in pack.configurations():
            mods = config_modalities(config)
            present = torch.tensor([m in mods for m in pack.modality_names], device=emb.device).expand(n, -1)
            correct = int((head(emb, present).argmax(1) == target).sum())
            lo, hi = wilson_interval(correct, n)
            rows.append({"configuration": config, "modalities": list(mods), "n": n, "correct": correct,
                         "accuracy": correct / n, "ci_low": lo, "ci_high": hi})
    return rows


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
    write=False. Raises CheckpointError if the model is not trained, NotImplementedError if
    its pack brings no data (evaluate an exported version with `mosel model eval` instead)."""
    pack, encoders, head = ckpt.load_model(pack_name, home, device)
    split = pack.dataset("test", seed=0, data_dir=data_dir)
    data_split = pack.data_description()
    n = len(split)
    chunks = []
    with torch.inference_mode():
        for b in range(0, n, batch_size):
            idx = np.arange(b, min(n, b + batch_size))
            chunks.append(encode_all(pack, encoders, batch_items(pack, split, idx), device))
        emb = torch.cat(chunks)
    rows = configuration_accuracy(pack, head, emb, split.labels)
    if write:
        manifest = ckpt.load_manifest(pack_name, home)
        ckpt.write_json(
            ckpt.model_dir(pack_name, home) / ckpt.ACCURACY,
            {
                "model": pack_name,
                "checkpoint_sha256": manifest["checkpoint"]["sha256"],
                "split": "test",
                "data_split": data_split,
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
