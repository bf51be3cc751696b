"""A model from a repository as a `ModelPack`: the manifest declares it, the artifacts are
its encoders and fusion head. No Python of the model's own is needed to serve it; clients
send wire-ready tensors (there is no preprocessing to run)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from mosel.errors import InvalidInput
from mosel.models.checkpoint import sha256_file
from mosel.models.pack import ModelPack
from mosel.repository.artifacts import ArtifactError, load_artifact
from mosel.repository.manifest import ModelVersion


class RepositoryPack(ModelPack):
    def __init__(self, version: ModelVersion):
        super().__init__(name=version.name, embed_dim=version.embed_dim, labels=version.labels,
                         modalities=tuple(m.spec for m in version.modalities), size={"version": version.version})
        self.version = version

    def _load(self, field: str, relative: str, device: str = "cpu") -> nn.Module:
        path = self.version.artifact_path(relative)
        expected = (self.version.raw.get("artifacts") or {}).get(relative)
        if expected and path.is_file() and sha256_file(path) != expected:
            raise ArtifactError(path, field, "sha256 differs from the manifest's \"artifacts\" entry "
                                             "(the file changed after export)")
        return load_artifact(path, field, device=device).eval()

    def build_encoder(self, modality: str, device: str = "cpu") -> nn.Module:
        """The trained encoder (an artifact is never untrained), loaded onto `device`."""
        for field, entry in zip((f for f, _ in self.version.artifact_fields()), self.version.modalities):
            if entry.spec.name == modality:
                return self._load(field, entry.encoder, device)
        raise KeyError(f"model {self.name!r} has no modality {modality!r}; it has {list(self.modality_names)}")

    def build_fusion_head(self, device: str = "cpu") -> nn.Module:
        return self._load("fusion_head", self.version.fusion_head, device)

    def preprocess(self, modality: str, raw: Any, field: str | None = None) -> np.ndarray:
        """Repository models take wire-ready arrays: checked against the manifest, not transformed."""
        field = field or modality
        if modality not in self.modality_names:
            raise InvalidInput("modality", f"model {self.name!r} has no modality {modality!r}")
        item = np.ascontiguousarray(np.asarray(raw))
        self.validate_item(modality, item, field)
        return item
