"""Model-pack registry: name -> pack factory.

    from mosel.models import get_pack, pack_names
    pack = get_pack("av-digits", preset="tiny")

Packs come from four places, all under one name space (a name taken twice by different
targets is an error that names both):
- built in (AV-Digits);
- installed packages, through the entry-point group `mosel.models`: the entry point's name is
  the pack name, its value "module:Class" (or a factory). The group is read lazily, once, on
  first registry use; the module is imported only when the pack is built.
  In a package's pyproject.toml:

      [project.entry-points."mosel.models"]
      sensor-digits = "sensor_digits.pack:SensorDigitsPack"

- `register_pack_path("module:Class")` (or `use_packs([...])`, or the command lines' `--pack`)
  for a pack on the Python path that is not installed. The target is imported and checked
  at once: it must be a ModelPack subclass, or a callable returning a ModelPack. **Its name
  is the `name` of the pack built with default knobs** (`Class()`), so packs that set their
  name in `__init__` need no extra class attribute; building a pack must therefore be cheap
  and work without arguments (no weights or data are touched by a constructor);
- the environment variable MOSEL_PACKS, a comma-separated list of "module:Class" specs,
  applied on registry use (again whenever its value changes), so child processes started
  with the parent's environment see the parent's packs;
- `register_pack(name, factory)`, the programmatic form (a callable or a "module:attr" path).

Bad specs raise ValueError naming the spec: a module that does not import, a missing
attribute, an object that is not a pack, a pack that does not build with default knobs.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from mosel.models.pack import ModelPack

GROUP = "mosel.models"  # entry-point group of installed packs
ENV = "MOSEL_PACKS"  # comma-separated "module:Class" specs

# name -> "module:attribute" (imported lazily, so listing names imports no model code)
_BUILTIN: dict[str, str] = {
    "av-digits": "mosel.models.av_digits.pack:AVDigitsPack",
}


@dataclass
class _Entry:
    target: str | None  # "module:attr", None for a callable registered directly
    origin: str  # where the registration came from, for messages
    factory: Callable[..., ModelPack] | None = None  # resolved on first use

    def describe(self) -> str:
        return f"{self.target or repr(self.factory)} ({self.origin})"


_lock = threading.RLock()
_entries: dict[str, _Entry] = {name: _Entry(target, "built in") for name, target in _BUILTIN.items()}
_entry_points_read = False
_env_applied: str | None = None  # the MOSEL_PACKS value last applied


def _parse(spec: str) -> tuple[str, str]:
    module, sep, attr = str(spec).strip().partition(":")
    if not sep or not module or not attr or ":" in attr:
        raise ValueError(f"model pack spec {spec!r} is not of the form MODULE:CLASS (e.g. my_pack.model:MyPack)")
    return module.strip(), attr.strip()


def _resolve(spec: str) -> Any:
    """Import "module:attr.sub" -> the object; ValueError naming the spec on failure."""
    module_name, attr = _parse(spec)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any error raised while importing the user's module
        raise ValueError(f"model pack {spec!r}: module {module_name!r} does not import "
                         f"({type(exc).__name__}: {exc}); is it on the Python path?") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model pack {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _as_factory(obj: Any, spec: str) -> Callable[..., ModelPack]:
    """A ModelPack subclass, or a callable returning one (checked when it is called)."""
    if inspect.isclass(obj):
        if not issubclass(obj, ModelPack):
            raise ValueError(f"model pack {spec!r}: {obj.__module__}.{obj.__qualname__} is not a "
                             f"subclass of mosel.models.pack.ModelPack")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise ValueError(f"model pack {spec!r}: {obj.__qualname__} is abstract (does not implement {missing})")
        return obj
    if callable(obj):
        return _checked(obj, spec)
    raise ValueError(f"model pack {spec!r}: {type(obj).__name__} object is neither a ModelPack subclass nor a factory")


def _checked(factory: Callable[..., Any], spec: str) -> Callable[..., ModelPack]:
    def build(**size: Any) -> ModelPack:
        pack = factory(**size)
        if not isinstance(pack, ModelPack):
            raise ValueError(f"model pack {spec!r}: the factory returned {type(pack).__name__}, not a ModelPack")
        return pack

    build.__wrapped__ = factory  # type: ignore[attr-defined]
    return build


def _same_target(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return _parse(a) == _parse(b)
    except ValueError:
        return a == b


def _read_entry_points() -> None:
    """Add the installed packs of the `mosel.models` group (names only, nothing imported)."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    from importlib import metadata

    try:
        found = metadata.entry_points(group=GROUP)
    except Exception as exc:  # a broken installation must not take the registry down
        warnings.warn(f"reading the {GROUP!r} entry points failed: {exc}", RuntimeWarning, stacklevel=3)
        return
    for ep in sorted(found, key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        entry = _Entry(ep.value, f"entry point of {dist}")
        taken = _entries.get(ep.name)
        if taken is None:
            _entries[ep.name] = entry
        elif not _same_target(taken.target, ep.value):
            # one broken installation must not break every pack: keep the first, say why
            warnings.warn(f"model pack {ep.name!r} from {entry.describe()} is ignored: the name is taken by "
                          f"{taken.describe()}", RuntimeWarning, stacklevel=3)


def _apply_env() -> None:
    global _env_applied
    value = os.environ.get(ENV, "")
    if value == _env_applied:
        return
    specs = [s.strip() for s in value.split(",") if s.strip()]
    for spec in specs:
        try:
            _register_path(spec, origin=ENV)
        except ValueError as exc:
            raise ValueError(f"{ENV}={value!r}: {exc}") from None
    _env_applied = value


def _ensure_loaded() -> None:
    with _lock:
        _read_entry_points()
        _apply_env()


def _register_path(spec: str, origin: str) -> str:
    target = "{}:{}".format(*_parse(spec))
    with _lock:
        for name, entry in _entries.items():  # the same target again: a no-op
            if _same_target(entry.target, target):
                return name
        factory = _as_factory(_resolve(target), spec)
        try:
            pack = factory()
        except Exception as exc:
            raise ValueError(f"model pack {spec!r}: building it with default knobs failed "
                             f"({type(exc).__name__}: {exc}); the registry reads the pack's name from that build") \
                from exc
        name = pack.name
        if not isinstance(name, str) or not name or name == "unnamed":
            raise ValueError(f"model pack {spec!r} sets no name (pass name=... to ModelPack.__init__)")
        taken = _entries.get(name)
        if taken is not None:
            if _unwrap(_known_factory(taken)) is _unwrap(factory):  # the same class under another path
                return name
            raise ValueError(f"model pack name {name!r} is taken by {taken.describe()}; cannot register {target!r} "
                             f"({origin}) under it")
        _entries[name] = _Entry(target, origin, factory)
        return name


def _unwrap(f: Any) -> Any:
    return getattr(f, "__wrapped__", f)


def _known_factory(entry: _Entry) -> Any:
    if entry.factory is None and entry.target:
        try:
            return _as_factory(_resolve(entry.target), entry.target)
        except ValueError:
            return None
    return entry.factory


def register_pack_path(spec: str) -> str:
    """Register the pack class (or factory) `spec` = "module:Class" from the Python path; returns its name.

    The name is that of the pack built with default knobs. Registering the same target again
    is a no-op; a different target under a taken name raises ValueError naming both."""
    _ensure_loaded()
    return _register_path(spec, origin="register_pack_path")


def use_packs(specs: Iterable[str] | None) -> list[str]:
    """register_pack_path for every spec (None or empty: nothing); returns the pack names."""
    if isinstance(specs, str):
        specs = [specs]
    _ensure_loaded()
    return [_register_path(spec, origin="use_packs / --pack") for spec in (specs or ())]


def register_pack(name: str, factory: Callable[..., ModelPack] | str) -> None:
    """Add a pack under `name`: a callable taking the size knobs, or a "module:attribute" path."""
    _ensure_loaded()
    with _lock:
        if name in _entries:
            raise ValueError(f"model pack {name!r} is already registered ({_entries[name].describe()})")
        if isinstance(factory, str):
            _entries[name] = _Entry("{}:{}".format(*_parse(factory)), "register_pack")
        else:
            _entries[name] = _Entry(None, "register_pack", factory)


def pack_names() -> list[str]:
    _ensure_loaded()
    with _lock:
        return sorted(_entries)


def pack_origin(name: str) -> str:
    """Where pack `name` was registered from ("built in", "entry point of DIST", ...)."""
    _ensure_loaded()
    return _lookup(name).describe()


def _lookup(name: str) -> _Entry:
    with _lock:
        entry = _entries.get(name)
        if entry is None:
            raise KeyError(f"unknown model pack {name!r}; known packs: {', '.join(sorted(_entries))} "
                           f"(a pack of your own: --pack MODULE:CLASS, {ENV}, or a {GROUP!r} entry point)")
        return entry


def _factory(name: str) -> Callable[..., ModelPack]:
    entry = _lookup(name)
    if entry.factory is None:
        factory = _as_factory(_resolve(entry.target), f"{entry.target} ({entry.origin})")
        with _lock:
            entry.factory = factory
    return entry.factory


def get_pack(name: str, **size: Any) -> ModelPack:
    """Build the pack `name` with its size knobs (e.g. preset="tiny", width=16, depth=2).

    Unknown name -> KeyError listing the known packs; unknown knob -> TypeError; a pack
    whose code cannot be imported -> ValueError naming it."""
    _ensure_loaded()
    pack = _factory(name)(**size)
    if pack.name != name:
        # checkpoints live under the pack's own name: a mismatch would save what cannot be loaded
        raise ValueError(f"model pack registered as {name!r} ({_lookup(name).describe()}) builds a pack "
                         f"named {pack.name!r}")
    return pack
