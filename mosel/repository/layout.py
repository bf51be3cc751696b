"""Where models live in a repository: `<repository>/<model>/<version>/`, versions being
positive integers; the newest is served unless a version is pinned (as in Triton)."""

from __future__ import annotations

import os
from pathlib import Path

from mosel.config import mosel_home
from mosel.repository.manifest import MANIFEST, ManifestError


def default_repository() -> Path:
    """`$MOSEL_HOME/repository` (not created: an absent repository simply holds no model)."""
    return mosel_home() / "repository"


def repository_path(repository: str | os.PathLike | None) -> Path:
    return Path(repository) if repository else default_repository()


def versions(repository: str | os.PathLike | None, model: str) -> list[int]:
    """Version numbers of `model` that hold a manifest, ascending (empty if none)."""
    folder = repository_path(repository) / model
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0 and (entry / MANIFEST).is_file():
            found.append(int(entry.name))
    return sorted(found)


def models(repository: str | os.PathLike | None) -> list[str]:
    """Names of the models with at least one version."""
    root = repository_path(repository)
    if not root.is_dir():
        return []
    return sorted(e.name for e in root.iterdir() if e.is_dir() and versions(root, e.name))


def has_model(repository: str | os.PathLike | None, model: str) -> bool:
    return bool(versions(repository, model))


def version_dir(repository: str | os.PathLike | None, model: str, version: int | None = None) -> Path:
    """The directory of `version` (newest when None or 0); ManifestError when there is none."""
    root = repository_path(repository)
    known = versions(root, model)
    if not known:
        raise ManifestError(root / model, "", f"no version of model {model!r} in repository {root} "
                                              f"(expected {root / model}/<version>/{MANIFEST})")
    if not version:
        return root / model / str(known[-1])
    if version not in known:
        raise ManifestError(root / model, "version", f"version {version} of {model!r} not found; "
                                                     f"versions: {', '.join(map(str, known))}")
    return root / model / str(version)


def next_version(repository: str | os.PathLike | None, model: str) -> int:
    known = versions(repository, model)
    return (known[-1] + 1) if known else 1
