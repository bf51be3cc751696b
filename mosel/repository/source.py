"""Find a model by name, wherever it lives: a version in the model repository, or a pack
trained by `mosel train` (a checkpoint under `$MOSEL_HOME/models/`). The repository wins
when it holds the name. Services and commands open models only through `open_model`, so
they serve a user's exported model and a built-in pack alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mosel.models import checkpoint as ckpt
from mosel.models.pack import ModelPack
from mosel.repository import layout
from mosel.repository.artifacts import ArtifactError
from mosel.repository.manifest import ManifestError, ModelVersion, parse_manifest
from mosel.repository.pack import RepositoryPack

ACCURACY = ckpt.ACCURACY
# Everything that means "this model cannot be opened"; each names the file at fault.
MODEL_ERRORS = (ckpt.CheckpointError, ManifestError, ArtifactError)


@dataclass
class OpenedModel:
    name: str
    pack: ModelPack
    manifest: dict  # as the services and the store use it (see ModelVersion.served_manifest)
    home: Path | None = None
    version: ModelVersion | None = None  # None for a trained pack

    @property
    def digest(self) -> str:
        """sha256 the store keys this model's profiles by."""
        return ckpt.checkpoint_sha256(self.manifest)

    @property
    def where(self) -> str:
        if self.version is not None:
            return f"{self.version.directory} (version {self.version.version})"
        return str(ckpt.model_dir(self.name, self.home))

    def encoder(self, modality: str, device: str = "cpu") -> nn.Module:
        if self.version is None:
            return ckpt.load_encoder(self.name, modality, self.home, device)[1]
        if modality not in self.pack.modality_names:
            raise KeyError(f"model {self.name!r} has no modality {modality!r}; it has {list(self.pack.modality_names)}")
        return self.pack.build_encoder(modality, device=device).to(device).eval()

    def fusion_head(self, device: str = "cpu") -> nn.Module:
        if self.version is None:
            return ckpt.load_fusion_head(self.name, self.home, device)[1]
        return self.pack.build_fusion_head(device=device).to(device).eval()

    def accuracy_path(self) -> Path:
        if self.version is not None:
            return self.version.directory / ACCURACY
        return ckpt.model_dir(self.name, self.home) / ACCURACY

    def accuracy(self) -> dict:
        """The accuracy profile written for exactly this model (CheckpointError if absent or stale)."""
        if self.version is None:
            return ckpt.load_accuracy(self.name, self.home)
        path = self.accuracy_path()
        hint = f"create it with `mosel model eval {self.version.directory} --data FILE.npz`"
        if not path.is_file():
            raise ckpt.CheckpointError(f"no accuracy profile {path}; {hint}")
        try:
            acc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ckpt.CheckpointError(f"accuracy profile {path} is unreadable ({exc}); {hint}") from None
        if not isinstance(acc, dict) or acc.get("checkpoint_sha256") != self.digest:
            raise ckpt.CheckpointError(f"accuracy profile {path} is for other artifacts; {hint}")
        return acc


def open_model(name: str, home: str | os.PathLike | None = None, repository: str | os.PathLike | None = None,
               version: int | None = None) -> OpenedModel:
    """The model `name`: the pinned (or newest) repository version, else the trained pack.

    Raises one of MODEL_ERRORS, naming the file and field at fault."""
    if layout.has_model(repository, name) or version:
        return open_version(layout.version_dir(repository, name, version))
    manifest = ckpt.load_manifest(name, home)
    pack = ckpt.load_pack_from_manifest(manifest)
    return OpenedModel(name, pack, manifest, Path(home) if home else None)


def open_version(directory: str | os.PathLike) -> OpenedModel:
    """The repository version in `directory` (for commands given a path, e.g. `mosel model eval`)."""
    parsed = parse_manifest(Path(directory))
    return OpenedModel(parsed.name, RepositoryPack(parsed), parsed.served_manifest(), None, parsed)


def find_digest(name: str, digest: str, home: str | os.PathLike | None = None,
                repository: str | os.PathLike | None = None) -> OpenedModel | None:
    """The version of `name` whose weights have sha256 `digest` (newest first), or None.

    Looks at the trained pack (it may have been retrained since) and at every repository
    version, so an encoder can follow the selection service to a version it has not loaded."""
    candidates = []
    if not layout.has_model(repository, name):
        try:
            candidates.append(open_model(name, home=home))
        except MODEL_ERRORS:
            pass
    for number in reversed(layout.versions(repository, name)):
        folder = layout.version_dir(repository, name, number)
        try:
            candidates.append(open_version(folder))
        except MODEL_ERRORS:
            continue  # a broken version cannot be the one asked for
        if candidates[-1].digest == digest:
            return candidates[-1]
    return next((c for c in candidates if c.digest == digest), None)
