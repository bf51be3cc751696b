"""A model as the selection service serves it: pack, fusion head, profiles from the store.

Profiles arrive from the profile store at start and whenever a new version is written;
`ServedModel` swaps them in atomically (readers take one consistent snapshot).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from mosel.models.pack import ModelPack
from mosel.repository.source import OpenedModel, open_model

if TYPE_CHECKING:
    from mosel.planning.costs import CostModel
    from mosel.planning.solver import StrategyMatrix
    from mosel.protocol.v1.profile_store_pb2 import ConfigurationAccuracy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profiles:
    """One consistent set of store records (None when the store has none yet)."""

    accuracy: dict[str, float] = field(default_factory=dict)
    accuracy_detail: dict[str, ConfigurationAccuracy] = field(default_factory=dict)
    accuracy_version: int = 0
    latency_version: int = 0
    cost: CostModel | None = None
    matrix: StrategyMatrix | None = None
    matrix_version: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    tuning_version: int = 0
    # After a version swap: matrices solved from an accuracy profile older than this are
    # for the previous weights and are not applied.
    min_matrix_accuracy_version: int = 0


@dataclass(frozen=True)
class ModelState:
    """The weights served, as one snapshot: a round reads the state once when it is committed
    and uses it to the end (encoders asked for exactly these weights, this head fuses), so
    a version swapped in meanwhile never mixes with it."""

    pack: ModelPack
    head: torch.nn.Module
    manifest: dict

    @property
    def digest(self) -> str:
        """sha256 of the weights (the profile store keys profiles by it); "" if unknown."""
        return (self.manifest.get("checkpoint") or {}).get("sha256", "")


class ServedModel:
    def __init__(self, name: str, pack: ModelPack, head: torch.nn.Module, manifest: dict):
        self.name = name
        self._state = ModelState(pack, head, manifest)
        self.configurations = pack.configurations()
        self.full_configuration = self.configurations[0]
        self._profiles = Profiles()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name: str, home=None, repository=None, version: int | None = None,
             opened: OpenedModel | None = None) -> "ServedModel":
        """From the model repository or the trained packs (see mosel.repository.source)."""
        opened = opened or open_model(name, home=home, repository=repository, version=version)
        return cls(name, opened.pack, opened.fusion_head("cpu").eval(), opened.manifest)

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def pack(self) -> ModelPack:
        return self._state.pack

    @property
    def head(self) -> torch.nn.Module:
        return self._state.head

    @property
    def manifest(self) -> dict:
        return self._state.manifest

    @property
    def digest(self) -> str:
        return self._state.digest

    def swap(self, opened: OpenedModel) -> None:
        """Serve other weights of the same modalities (a new repository version, a retrained
        pack). Its profiles start empty: those of the old weights say nothing about the new."""
        if tuple(opened.pack.modality_names) != tuple(self.pack.modality_names):
            raise ValueError(f"{self.name}: the new version has modalities {list(opened.pack.modality_names)}, "
                             f"the served one {list(self.pack.modality_names)}; restart the services to change them")
        state = ModelState(opened.pack, opened.fusion_head("cpu").eval(), opened.manifest)
        with self._lock:
            self._state = state
            self._profiles = Profiles()

    @property
    def profiles(self) -> Profiles:
        return self._profiles

    def update_profiles(self, **changes) -> None:
        with self._lock:
            current = self._profiles.__dict__.copy()
            current.update(changes)
            self._profiles = Profiles(**current)

    @property
    def has_accuracy_profile(self) -> bool:
        return bool(self._profiles.accuracy)

    def accuracy_of(self, configuration: str) -> float:
        return self._profiles.accuracy.get(configuration, 0.0)

    def latency_b1_ms(self, configuration: str) -> float:
        """Profiled latency of a single request with this configuration (0 without a profile)."""
        cost = self._profiles.cost
        if cost is None:
            return 0.0
        return float(cost.latency({configuration: 1}))
