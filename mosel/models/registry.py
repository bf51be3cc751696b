"""Model-pack registry: name -> pack factory.

    from mosel.models import get_pack, pack_names
    pack = get_pack("av-digits", preset="tiny")
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from mosel.models.pack import ModelPack

# name -> "module:attribute" (imported lazily, so listing names imports no model code)
_BUILTIN: dict[str, str] = {
    "av-digits": "mosel.models.av_digits.pack:AVDigitsPack",
}
_EXTRA: dict[str, Callable[..., ModelPack]] = {}


def register_pack(name: str, factory: Callable[..., ModelPack] | str) -> None:
    """Add a pack: a callable taking the size knobs, or a "module:attribute" path."""
    if name in _BUILTIN or name in _EXTRA:
        raise ValueError(f"model pack {name!r} is already registered")
    if isinstance(factory, str):
        _BUILTIN[name] = factory
    else:
        _EXTRA[name] = factory


def pack_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_EXTRA))


def _factory(name: str) -> Callable[..., ModelPack]:
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _BUILTIN:
        raise KeyError(f"unknown model pack {name!r}; known packs: {', '.join(pack_names())}")
    module, attr = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), attr)


def get_pack(name: str, **size: Any) -> ModelPack:
    """Build the pack `name` with its size knobs (e.g. preset="tiny", width=16, depth=2).

    Unknown name -> KeyError listing the known packs; unknown knob -> TypeError."""
    return _factory(name)(**size)
