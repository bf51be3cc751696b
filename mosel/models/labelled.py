"""Labelled data a model pack brings for training and evaluation (`ModelPack.dataset`).

A `LabelledSet` is anything with
- `len(s)`: the number of samples;
- `s.labels`: int64[N] class indices into the pack's labels;
- `s.items(modality)`: the N wire-ready items of one modality (the spec's dtype and per-item
  shape), as a list of arrays or, for equal-sized items, one stacked array [N, *shape] (an
  array indexes like a sequence of items and lets training pack whole batches at once).
Sequence lengths, for length bucketing, are read off the items (`steps`).

`ArraySet` is a ready-made one; mosel.repository.data.NpzSet is another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class LabelledSet(Protocol):
    labels: np.ndarray

    def __len__(self) -> int: ...

    def items(self, modality: str) -> Sequence[np.ndarray]: ...


@dataclass
class ArraySet:
    """Labels plus items by modality (lists of arrays or stacked arrays)."""

    labels: np.ndarray
    by_modality: Mapping[str, Sequence[np.ndarray]]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        for name, items in self.by_modality.items():
            if len(items) != n:
                raise ValueError(f"modality {name!r} has {len(items)} items for {n} labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def items(self, modality: str) -> Sequence[np.ndarray]:
        try:
            return self.by_modality[modality]
        except KeyError:
            raise KeyError(f"no items for modality {modality!r}; have {sorted(self.by_modality)}") from None


def take(items: Sequence[np.ndarray], idx: Sequence[int] | np.ndarray) -> Sequence[np.ndarray]:
    """The items at `idx`: a stacked array stays stacked (vectorised packing), else a list."""
    if isinstance(items, np.ndarray):
        return items[np.asarray(idx)]
    return [items[int(i)] for i in idx]


def steps(items: Sequence[np.ndarray]) -> list[int]:
    """Length of each item's sequence axis (dim 0)."""
    if isinstance(items, np.ndarray):
        return [int(items.shape[1])] * int(items.shape[0])
    return [int(np.shape(it)[0]) for it in items]


def samples(data: LabelledSet, modalities: Sequence[str], order: Sequence[int] | np.ndarray | None = None
            ) -> list[tuple[dict[str, np.ndarray], int]]:
    """(items by modality, label) pairs in `order` (default: as stored)."""
    order = range(len(data)) if order is None else order
    columns = {m: data.items(m) for m in modalities}
    return [({m: columns[m][int(i)] for m in modalities}, int(data.labels[int(i)])) for i in order]
