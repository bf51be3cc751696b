"""`mosel model eval`: accuracy of every configuration of a model on the user's own labelled
set (an .npz, see mosel.repository.data), with Wilson 95% intervals, written beside the
version as accuracy.json (the accuracy profile `mosel up` puts into the store)."""

from __future__ import annotations

import datetime as _dt
import logging
from typing import Any

import torch

from mosel.lifecycle.evaluate import configuration_accuracy
from mosel.models.checkpoint import write_json
from mosel.models.items import pack_items
from mosel.repository.source import OpenedModel

log = logging.getLogger(__name__)

# Below this many samples a 95% interval is wider than about +-0.06 at 80% accuracy.
SMALL_SET = 200


def embed(pack, encoders: dict, data, batch_size: int = 128, device: str = "cpu") -> torch.Tensor:
    """float32[N, M, D]: every item of `data` through its modality's encoder, packed exactly
    as the serving batcher packs (mosel.models.items.pack_items)."""
    n = len(data)
    chunks = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            per_modality = []
            for m in pack.modality_names:
                x, lengths = pack_items(list(data.items(m)[start:stop]), pack.modality(m).spec)
                per_modality.append(encoders[m](x.to(device), lengths.to(device)).float())
            chunks.append(torch.stack(per_modality, dim=1))
    return torch.cat(chunks)


def indistinct_pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Configurations next to each other in accuracy whose 95% intervals overlap."""
    ordered = sorted(rows, key=lambda r: r["accuracy"])
    return [(a["configuration"], b["configuration"]) for a, b in zip(ordered, ordered[1:])
            if a["ci_high"] >= b["ci_low"] and a["accuracy"] != b["accuracy"]]


def small_set_warning(rows: list[dict[str, Any]]) -> str | None:
    """Why the set may be too small to tell configurations apart (None when it is not)."""
    n = rows[0]["n"] if rows else 0
    overlapping = indistinct_pairs(rows)
    if n >= SMALL_SET and len(overlapping) * 2 <= len(rows):
        return None
    widest = max(r["ci_high"] - r["ci_low"] for r in rows) / 2 if rows else 1.0
    return (f"{n} samples give 95% intervals up to +-{widest:.3f}; {len(overlapping)} of {max(0, len(rows) - 1)} "
            "neighbouring configurations cannot be told apart -- the scheduler will trust differences that may "
            f"be noise (aim for >= {SMALL_SET} samples, more when configurations are close)")


def evaluate_on(opened: OpenedModel, data, source: str, batch_size: int = 128, write: bool = True) -> dict[str, Any]:
    """Accuracy profile of `opened` on `data` (a labelled set); written to accuracy.json unless
    write=False. Returns the profile document (rows under "configurations")."""
    pack = opened.pack
    encoders = {m: opened.encoder(m) for m in pack.modality_names}
    head = opened.fusion_head()
    emb = embed(pack, encoders, data, batch_size)
    rows = configuration_accuracy(pack, head, emb, data.labels)
    warning = small_set_warning(rows)
    if warning:
        log.warning("%s", warning)
    document = {
        "model": opened.name,
        "checkpoint_sha256": opened.digest,
        "split": "validation",
        "data_split": {"file": source, "samples": len(data)},
        "confidence": 0.95,
        "interval": "wilson",
        "configurations": rows,
        "warning": warning or "",
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if write:
        write_json(opened.accuracy_path(), document)
    return document
