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

from mosel.models.checkpoint import load_fusion_head, load_manifest
from mosel.models.pack import ModelPack

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


class ServedModel:
    def __init__(self, name: str, pack: ModelPack, head: torch.nn.Module, manifest: dict):
        self.name = name
        self.pack = pack
        self.head = head
        self.manifest = manifest
        self.configurations = pack.configurations()
        self.full_configuration = self.configurations[0]
        self._profiles = Profiles()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, name: str, home=None) -> "ServedModel":
        manifest = load_manifest(name, home=home)
        pack, head = load_fusion_head(name, home=home, device="cpu")
        return cls(name, pack, head.eval(), manifest)

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
