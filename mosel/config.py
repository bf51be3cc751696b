"""Where state and data live. One place, so every command and service agrees."""

from __future__ import annotations

import os
from pathlib import Path

# The offline data sits beside the project checkout in development and CI
# (../shared/data); users elsewhere point MOSEL_DATA_DIR at their own copy.
_REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_DATA_DIR = _REPO_ROOT.parent / "shared" / "data"


def mosel_home() -> Path:
    """State directory: checkpoints, manifests, the SQLite profile store, build caches."""
    env = os.environ.get("MOSEL_HOME")
    if env:
        path = Path(env)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache) / "mosel"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Directory holding `fsdd/recordings` and `digits/digits.png` (see README, Data)."""
    if override:
        return Path(override)
    env = os.environ.get("MOSEL_DATA_DIR")
    return Path(env) if env else _DEFAULT_DATA_DIR


def repo_root() -> Path:
    return _REPO_ROOT
