"""`mosel model check PATH`: is a repository version servable? Every problem is reported
with the file and the manifest field it concerns; nothing stops at the first one except a
manifest that cannot be read at all.

Checks: the manifest parses; every artifact loads; each encoder takes a batch of 1 and of
max_batch items built from the manifest's spec (for a sequence modality both one step and
max_steps steps, padded batches included) and returns float32 [K, embed_dim], finite; the
fusion head takes every non-empty subset of modalities at batch 1 and max_batch and returns
float32 [B, len(labels)], finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mosel.encoder.runner import synthetic_item
from mosel.models.items import pack_items
from mosel.repository.artifacts import ArtifactError
from mosel.repository.manifest import ManifestError, ModelVersion, parse_manifest
from mosel.repository.pack import RepositoryPack
from mosel.lifecycle.train import all_subsets


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


def check_version(directory: str | Path) -> tuple[ModelVersion | None, list[Problem]]:
    """(parsed manifest or None, problems). No problems means the version can be served."""
    try:
        version = parse_manifest(Path(directory))
    except ManifestError as exc:
        return None, [Problem(exc.path, exc.field, exc.message)]
    pack = RepositoryPack(version)
    problems: list[Problem] = []
    fields = dict((rel, field) for field, rel in version.artifact_fields())
    for entry in version.modalities:
        field = fields[entry.encoder]
        try:
            encoder = pack.build_encoder(entry.spec.name)
        except ArtifactError as exc:
            problems.append(Problem(exc.path, exc.field or field, exc.message))
            continue
        problems += _check_encoder(version, entry, encoder, field)
    try:
        head = pack.build_fusion_head()
    except ArtifactError as exc:
        problems.append(Problem(exc.path, exc.field or "fusion_head", exc.message))
    else:
        problems += _check_head(version, head)
    return version, problems


def _batches(spec, max_batch: int, rng) -> list[tuple[str, list[np.ndarray]]]:
    dynamic = spec.sequence and spec.shape[0] == -1
    longest = spec.max_steps if dynamic else None
    out = [("batch 1", [synthetic_item(spec, rng, steps=1 if dynamic else None)]),
           (f"batch {max_batch}", [synthetic_item(spec, rng, steps=longest) for _ in range(max_batch)])]
    if dynamic and max_batch > 1:
        # mixed lengths: the padded batch the serving batcher builds
        steps = [1 + (i * (longest - 1)) // (max_batch - 1) for i in range(max_batch)]
        out.append((f"padded batch {max_batch} (1..{longest} steps)", [synthetic_item(spec, rng, steps=s) for s in steps]))
    return out


def _check_encoder(version: ModelVersion, entry, encoder, field: str) -> list[Problem]:
    path = str(version.artifact_path(entry.encoder))
    spec = entry.spec.spec
    rng = np.random.default_rng(0)
    problems = []
    for what, items in _batches(spec, version.max_batch, rng):
        x, lengths = pack_items(items, spec)
        try:
            with torch.inference_mode():
                out = encoder(x, lengths)
        except Exception as exc:  # an artifact can raise anything; report it, do not crash
            problems.append(Problem(path, field, f"fails on a {what} built from modalities "
                                    f"{entry.spec.name!r} shape {list(spec.shape)} (packed x {list(x.shape)}): "
                                    f"{_first_line(exc)}"))
            continue
        want = [len(items), version.embed_dim]
        if not isinstance(out, torch.Tensor):
            problems.append(Problem(path, field, f"returns {type(out).__name__} on a {what}, not a tensor"))
        elif list(out.shape) != want:
            problems.append(Problem(path, "embed_dim", f"encoder returns shape {list(out.shape)} on a {what}; "
                                    f"the manifest needs {want}"))
        elif out.dtype != torch.float32:
            problems.append(Problem(path, field, f"returns {out.dtype} on a {what}; needs torch.float32"))
        elif not bool(torch.isfinite(out).all()):
            problems.append(Problem(path, field, f"returns non-finite values on a {what}"))
    return problems


def _check_head(version: ModelVersion, head) -> list[Problem]:
    path = str(version.artifact_path(version.fusion_head))
    m, d, classes = len(version.modalities), version.embed_dim, len(version.labels)
    gen = torch.Generator().manual_seed(0)
    names = version.modality_names
    problems = []
    for b in sorted({1, version.max_batch}):
        emb = torch.randn(b, m, d, generator=gen)
        for subset in all_subsets(m):
            present = subset.expand(b, -1).clone()
            chosen = "+".join(n for n, on in zip(names, subset[0].tolist()) if on)
            try:
                with torch.inference_mode():
                    out = head(emb, present)
            except Exception as exc:  # see _check_encoder
                problems.append(Problem(path, "fusion_head", f"fails for modalities {chosen} at batch {b}: "
                                        f"{_first_line(exc)}"))
                continue
            if not isinstance(out, torch.Tensor) or list(out.shape) != [b, classes]:
                shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                problems.append(Problem(path, "labels", f"fusion head returns {shape} for {chosen} at batch {b}; "
                                        f"the manifest's {classes} labels need [{b}, {classes}]"))
            elif out.dtype != torch.float32 or not bool(torch.isfinite(out).all()):
                problems.append(Problem(path, "fusion_head", f"returns {out.dtype} with non-finite values or "
                                        f"not float32 for {chosen} at batch {b}"))
    return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:400]
