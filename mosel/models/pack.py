"""The model-pack interface: what a multi-modal model must declare to be served.

A pack names its modalities with a wire tensor spec each, builds one encoder per
modality and a fusion head that predicts from any non-empty subset of modality
embeddings. Services only talk to this interface; adding a model is one new module.

Contract shared with the batching ops (mosel.ops.batching):
- An *item* (one request's tensor for one modality) arrives in `spec.dtype` with
  shape `spec.shape`; a -1 dimension is dynamic. If `spec.sequence` is true, dim 0
  is the sequence axis (frames, time steps): packing may keep every k-th step
  (frame stride) and pads to the longest item. Otherwise the whole item is one step.
- Packing turns a list of items into `x: float32[K, L, row]` (row = product of the
  remaining dims), applying `(value - spec.mean) / spec.std`, zero padding *after*
  normalisation, plus `lengths: int64[K]` (steps per item).
- An encoder maps `(x, lengths)` to embeddings `float32[K, embed_dim]`.
- The fusion head maps `(emb: float32[B, M, embed_dim], present: bool[B, M])`, M in
  the pack's modality order, to logits `float32[B, num_classes]`; a row with no
  present modality is an error.

Data hooks (optional; a pack without them can be served but not trained or evaluated here):
`dataset(split, seed, data_dir)` returns a mosel.models.labelled.LabelledSet, with
`data_description()` (recorded in manifests) and `training_defaults()`; `test_samples`
is built on them. The defaults raise NotImplementedError saying the pack brings no data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from torch import nn

from mosel.errors import InvalidInput  # noqa: F401 - part of the pack interface
from mosel.modalities import all_configurations

if TYPE_CHECKING:
    from mosel.models.labelled import LabelledSet

# what `training_defaults` gives a pack that does not say (mosel.lifecycle.train fills gaps from it)
TRAINING_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4}


@dataclass(frozen=True)
class TensorSpec:
    dtype: str  # numpy dtype name on the wire; serving's batching ops take "uint8", "float16", "float32"
    shape: tuple[int, ...]  # per item, without batch; -1 marks a dynamic dim
    sequence: bool = False  # dim 0 is a sequence axis (see module doc)
    mean: float = 0.0  # normalisation applied when packing
    std: float = 1.0
    max_steps: int = 0  # upper bound for a dynamic sequence axis (0 = none)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:] if self.sequence else self.shape

    @property
    def row_elems(self) -> int:
        return int(np.prod(self.row_shape)) if self.row_shape else 1


@dataclass(frozen=True)
class ModalitySpec:
    name: str
    spec: TensorSpec
    description: str = ""


@dataclass
class ModelPack(ABC):
    """Declares a model. Subclasses set the class attributes and implement the builders."""

    name: str = "unnamed"
    embed_dim: int = 64
    labels: tuple[str, ...] = ()
    modalities: tuple[ModalitySpec, ...] = ()
    size: dict[str, Any] = field(default_factory=dict)  # width/depth knobs, recorded in the manifest

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def configurations(self) -> list[str]:
        return all_configurations(self.modality_names)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(name)

    @abstractmethod
    def build_encoder(self, modality: str) -> nn.Module:
        """Untrained encoder for one modality: forward(x, lengths) -> [K, embed_dim]."""

    @abstractmethod
    def build_fusion_head(self) -> nn.Module:
        """Untrained fusion head: forward(emb [B, M, D], present [B, M]) -> logits [B, C]."""

    @abstractmethod
    def preprocess(self, modality: str, raw: Any) -> np.ndarray:
        """Raw input (file path, waveform, image) -> wire-ready item of the spec's dtype/shape."""

    def validate_item(self, modality: str, item: np.ndarray, field: str = "tensor") -> None:
        """Raise InvalidInput (naming `field`) unless `item` matches the modality's spec."""
        try:
            spec = self.modality(modality).spec
        except KeyError:
            raise InvalidInput("modality", f"model {self.name!r} has no modality {modality!r}")
        if item.dtype != np.dtype(spec.dtype):
            raise InvalidInput(field, f"{modality} expects dtype {spec.dtype}, got {item.dtype}")
        if item.ndim != len(spec.shape):
            raise InvalidInput(
                field, f"{modality} expects rank {len(spec.shape)} {list(spec.shape)}, got shape {list(item.shape)}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, item.shape)):
            if want == -1:
                if got < 1:
                    raise InvalidInput(field, f"{modality} dim {axis} must be >= 1, got {got}")
                if axis == 0 and spec.max_steps and got > spec.max_steps:
                    raise InvalidInput(field, f"{modality} dim 0 is at most {spec.max_steps}, got {got}")
            elif want != got:
                raise InvalidInput(field, f"{modality} expects shape {list(spec.shape)}, got {list(item.shape)}")

    # -- data hooks (not abstract: packs without labelled data need not implement them)

    def _no_data(self, hook: str) -> NotImplementedError:
        return NotImplementedError(
            f"model pack {self.name!r} brings no labelled data ({type(self).__name__}.{hook} is not implemented); "
            "it cannot be trained or evaluated by mosel train/eval -- give it a dataset() hook, or evaluate "
            "an exported version on your own data with `mosel model eval VERSION_DIR --data FILE.npz`"
        )

    def dataset(self, split: str, seed: int = 0, data_dir: Any = None) -> "LabelledSet":
        """Labelled, wire-ready samples of `split` ("train" or "test"), a pure function of the arguments.

        "train" is drawn once per epoch with a different `seed` (fresh augmentation/pairing);
        "test" with seed 0 is the evaluation set (`mosel eval`), other seeds may give other
        draws of the same held-out sources. `data_dir` overrides the pack's data location."""
        raise self._no_data("dataset")

    def data_description(self) -> dict[str, Any]:
        """JSON-able description of the data and splits, recorded in manifests as `data_split`."""
        raise self._no_data("data_description")

    def training_defaults(self) -> dict[str, Any]:
        """Training hyper-parameters for this size: epochs, batch_size, lr, weight_decay (and
        optionally modality_dropout, "all" or "random"). Missing keys take TRAINING_DEFAULTS."""
        return dict(TRAINING_DEFAULTS)

    def test_samples(
        self, data_dir: Any = None, limit: int | None = None, seed: int = 0
    ) -> list[tuple[dict[str, np.ndarray], int]]:
        """Wire-ready (items by modality, label) from `dataset("test", seed)`, for demos, profiling
        and load generators. seed=0 is the evaluation draw; the order is shuffled by `seed`, so
        a `limit` still covers the classes."""
        from mosel.models.labelled import samples

        data = self.dataset("test", seed=seed, data_dir=data_dir)
        order = np.random.default_rng(seed).permutation(len(data))
        if limit is not None:
            order = order[: max(0, int(limit))]
        return samples(data, self.modality_names, order)

    def describe(self) -> dict[str, Any]:
        """JSON-able description, the core of the manifest."""
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "labels": list(self.labels),
            "size": dict(self.size),
            "modalities": [
                {
                    "name": m.name,
                    "description": m.description,
                    "dtype": m.spec.dtype,
                    "shape": list(m.spec.shape),
                    "sequence": m.spec.sequence,
                    "mean": m.spec.mean,
                    "std": m.spec.std,
                    "max_steps": m.spec.max_steps,
                }
                for m in self.modalities
            ],
            "configurations": self.configurations(),
        }

