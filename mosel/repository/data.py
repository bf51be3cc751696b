"""A user's labelled validation set as one `.npz` file (documented in docs/models.md).

    labels           int   [N]            class index into the manifest's labels
    <modality>       dtype [N, *shape]    one array per modality, items in the modality's
                                          dtype and per-item shape; a dynamic sequence axis
                                          is padded to the longest item ...
    <modality>.lengths int [N]            ... and its true lengths given here

No pickled objects (the file is loaded with allow_pickle=False). `save_labelled` writes the
same format (used by `mosel model export --with-data` for packs that bring test data).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mosel.models.pack import ModelPack
from mosel.repository.manifest import ManifestError

LABELS = "labels"
LENGTHS = ".lengths"


@dataclass
class NpzSet:
    """Items by modality and labels, validated against a pack's specs."""

    labels: np.ndarray
    by_modality: dict[str, list[np.ndarray]]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def items(self, modality: str) -> Sequence[np.ndarray]:
        return self.by_modality[modality]


def load_labelled(path: str | os.PathLike, pack: ModelPack) -> NpzSet:
    """Read and check `path` against `pack`; ManifestError names the file and the array at fault."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "", "no such data file")
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ManifestError(path, "", f"not a readable .npz without pickled objects ({exc})") from None
    if LABELS not in arrays:
        raise ManifestError(path, LABELS, "missing: an int array [N] of class indices")
    labels = arrays[LABELS]
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or labels.shape[0] == 0:
        raise ManifestError(path, LABELS, f"must be a non-empty 1-D integer array, got {labels.dtype}{list(labels.shape)}")
    if labels.min() < 0 or labels.max() >= pack.num_classes:
        raise ManifestError(path, LABELS, f"class indices must be in 0..{pack.num_classes - 1}")
    n = labels.shape[0]
    expected = {LABELS} | set(pack.modality_names) | {m.name + LENGTHS for m in pack.modalities if -1 in m.spec.shape}
    extra = sorted(set(arrays) - expected)
    if extra:
        raise ManifestError(path, extra[0], f"unknown array; expected {sorted(expected)}")
    by_modality = {m.name: _items(path, arrays, m, n, pack) for m in pack.modalities}
    return NpzSet(labels.astype(np.int64), by_modality)


def _items(path: Path, arrays: dict, modality, n: int, pack: ModelPack) -> list[np.ndarray]:
    name, spec = modality.name, modality.spec
    if name not in arrays:
        raise ManifestError(path, name, "missing: every modality needs an array [N, *shape]")
    block = arrays[name]
    if block.shape[:1] != (n,):
        raise ManifestError(path, name, f"needs {n} rows (one per label), got shape {list(block.shape)}")
    if block.dtype != np.dtype(spec.dtype):
        raise ManifestError(path, name, f"dtype must be {spec.dtype} (the manifest's), got {block.dtype}")
    if -1 not in spec.shape:
        items = list(block)
    else:
        key = name + LENGTHS
        if key not in arrays:
            raise ManifestError(path, key, f"missing: {name} has a dynamic axis, give its lengths [N]")
        lengths = arrays[key]
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise ManifestError(path, key, f"must be an integer array [{n}]")
        if lengths.min() < 1 or lengths.max() > block.shape[1]:
            raise ManifestError(path, key, f"lengths must be in 1..{block.shape[1]} (the padded length)")
        items = [block[i, : int(lengths[i])] for i in range(n)]
    for i, item in enumerate(items):
        try:
            pack.validate_item(name, np.ascontiguousarray(item), field=f"{name}[{i}]")
        except ValueError as exc:
            raise ManifestError(path, f"{name}[{i}]", str(exc)) from None
    return [np.ascontiguousarray(it) for it in items]


def save_labelled(path: str | os.PathLike, pack: ModelPack, samples: Sequence[tuple[dict, int]]) -> Path:
    """Write (items by modality, label) pairs in the format `load_labelled` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {LABELS: np.asarray([label for _, label in samples], dtype=np.int64)}
    for m in pack.modalities:
        items = [inputs[m.name] for inputs, _ in samples]
        if -1 not in m.spec.shape:
            arrays[m.name] = np.stack(items)
            continue
        lengths = np.asarray([it.shape[0] for it in items], dtype=np.int64)
        block = np.zeros((len(items), int(lengths.max()), *items[0].shape[1:]), dtype=m.spec.dtype)
        for i, it in enumerate(items):
            block[i, : it.shape[0]] = it
        arrays[m.name] = block
        arrays[m.name + LENGTHS] = lengths
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path
