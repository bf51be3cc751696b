"""Just-in-time build and loading of the mosel C++/CUDA torch extension (csrc/).

`load_ops()` compiles the sources with torch.utils.cpp_extension.load (ninja) into
`mosel_home()/build/ext-<hash>`, the hash covering every source and header, the torch
version, whether CUDA sources are included and the compiler flags, and loads the
library so that `torch.ops.mosel.*` resolve. A warm cache loads in well under a second.

Sources are discovered under csrc/: the shared code in common/ and one folder per op
family in ops/<family>/ (schemas `<family>.cpp`, CPU kernels `*_cpu.cpp`, CUDA glue
`*_cuda.cpp`, CUDA kernels `*.cu`). The CUDA ones are included only when torch sees a
GPU and a CUDA toolkit is found. Once loaded, the ops' fake kernels (mosel.ops.fake) are
registered, so code calling them compiles with torch.compile.

When the extension cannot be used (sources missing, build or load failure, or
MOSEL_DISABLE_EXT=1) one warning naming the reason is logged per process,
`load_ops()` returns False and callers (mosel.ops.batching) use the pure-torch reference.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path

import torch

from mosel.config import mosel_home

logger = logging.getLogger(__name__)

CSRC_DIR = Path(__file__).resolve().parents[2] / "csrc"
EXTENSION_NAME = "mosel_ops"
# Op family -> its ops; csrc/ops/<family>/<family>.cpp declares their schemas.
OP_FAMILIES = {
    "drop_and_pack": ("drop_and_pack", "drop_and_pack_into"),
    "scatter_back": ("scatter_back", "scatter_back_into"),
}
DISABLE_ENV = "MOSEL_DISABLE_EXT"
# A build lock older than this is left over from a killed build (torch's FileBaton
# would otherwise wait on it forever).
_STALE_LOCK_S = 15 * 60

_lock = threading.Lock()
_loaded = False
_attempted = False
_error: str | None = None
_warned = False
_build_dir: Path | None = None


def _disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _is_cuda_source(path: Path) -> bool:
    return path.suffix == ".cu" or path.stem.endswith("_cuda")


def _sources(with_cuda: bool) -> list[Path]:
    """The translation units under csrc/ (.cpp, and .cu), without the CUDA ones
    (`*.cu`, `*_cuda.cpp`) unless `with_cuda`."""
    found = sorted(p for p in CSRC_DIR.rglob("*") if p.is_file() and p.suffix in (".cpp", ".cu"))
    return [p for p in found if with_cuda or not _is_cuda_source(p)]


def _schema_files() -> list[Path]:
    return [CSRC_DIR / "ops" / family / f"{family}.cpp" for family in OP_FAMILIES]


def _object_clashes(sources: list[Path]) -> list[str]:
    """Sources that torch's ninja build would compile to the same object file: it names
    objects after the file name alone, so one would silently replace the other."""
    by_object: dict[str, list[str]] = {}
    for src in sources:
        obj = src.stem + (".cuda" if src.suffix == ".cu" else "")
        by_object.setdefault(obj, []).append(str(src.relative_to(CSRC_DIR)))
    return [" and ".join(paths) for paths in by_object.values() if len(paths) > 1]


def _hashed_files() -> list[Path]:
    """Every source and header under csrc/: what the build depends on."""
    suffixes = (".cpp", ".cu", ".h", ".hpp", ".cuh")
    return sorted(p for p in CSRC_DIR.rglob("*") if p.is_file() and p.suffix in suffixes)


def _cuda_wanted() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "torch sees no GPU"
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    return True, f"CUDA toolkit at {cpp_extension.CUDA_HOME}"


def _uses_openmp() -> bool:
    # at::parallel_for is a header template that only runs in parallel when the
    # extension itself is compiled with OpenMP (when torch's backend is OpenMP).
    return "OpenMP" in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]


def _cpu_fingerprint() -> str:
    """Identifies the host CPU's instruction set, since the build uses -march=native."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cflags() -> list[str]:
    flags = ["-O3"]
    if platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"):
        flags.append("-march=native")
    if _uses_openmp():
        flags.append("-fopenmp")
    return flags


def _cuda_cflags() -> list[str]:
    return ["-O3", "--expt-relaxed-constexpr"]


def _build_hash(sources: list[Path], with_cuda: bool, cflags: list[str], cuda_cflags: list[str]) -> str:
    h = hashlib.sha256()
    for path in _hashed_files():
        h.update(str(path.relative_to(CSRC_DIR)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    for src in sources:
        h.update(str(src.relative_to(CSRC_DIR)).encode())
    h.update(f"torch={torch.__version__};cuda={with_cuda};torch_cuda={torch.version.cuda}".encode())
    h.update(f"py={sys.version_info[:2]};machine={platform.machine()};cpu={_cpu_fingerprint()}".encode())
    h.update(f"cflags={cflags};cuda_cflags={cuda_cflags};cxx={os.environ.get('CXX', '')}".encode())
    return h.hexdigest()[:16]


def _remove_stale_lock(build_dir: Path) -> None:
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > _STALE_LOCK_S:
        logger.warning("removing stale build lock %s (%.0f s old, left by a killed build)", lock, age)
        try:
            lock.unlink()
        except FileNotFoundError:
            pass


def _short(text: str) -> str:
    """The compiler's error lines of a build failure (the full output is long)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error" in ln or ln.startswith("error")]
    if errors:
        return " | ".join(errors[:3])[:600]
    return (lines[0] if lines else "unknown error")[:300]


def _fail(reason: str, detail: str | None = None) -> bool:
    global _error, _warned
    _error = reason if not detail else f"{reason}\n{detail}"
    if not _warned:
        _warned = True
        logger.warning("mosel C++ ops unavailable, using the pure-torch reference path: %s", reason)
    return False


def _build_and_load() -> bool:
    global _loaded, _build_dir
    if _disabled():
        return _fail(f"disabled by {DISABLE_ENV}={os.environ.get(DISABLE_ENV)}")
    with_cuda, cuda_reason = _cuda_wanted()
    missing = [str(p.relative_to(CSRC_DIR)) for p in _schema_files() if not p.is_file()]
    if missing:
        return _fail(f"extension sources missing under {CSRC_DIR}: {', '.join(missing)}")
    sources = _sources(with_cuda)
    clashes = _object_clashes(sources)
    if clashes:
        return _fail(f"extension sources under {CSRC_DIR} need distinct file names: {'; '.join(clashes)}")
    cflags = _cflags()
    cuda_cflags = _cuda_cflags() if with_cuda else []
    digest = _build_hash(sources, with_cuda, cflags, cuda_cflags)
    build_dir = mosel_home() / "build" / f"ext-{digest}"
    _build_dir = build_dir
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_lock(build_dir)
        from torch.utils import cpp_extension

        cached = any(build_dir.glob(f"{EXTENSION_NAME}*.so"))
        if not cached:
            logger.info(
                "building mosel C++ ops (%d sources, CUDA %s: %s) in %s; the first build takes a minute or two",
                len(sources), "on" if with_cuda else "off", cuda_reason, build_dir,
            )
        start = time.perf_counter()
        cpp_extension.load(
            name=EXTENSION_NAME,
            sources=[str(s) for s in sources],
            extra_cflags=cflags,
            extra_cuda_cflags=cuda_cflags,
            extra_include_paths=[str(CSRC_DIR)],
            build_directory=str(build_dir),
            with_cuda=with_cuda,
            is_python_module=False,
            verbose=False,
        )
        logger.debug("mosel C++ ops loaded in %.2f s from %s", time.perf_counter() - start, build_dir)
    except Exception as exc:  # compiler errors, missing toolchain, load errors
        text = str(exc) or type(exc).__name__
        return _fail(f"build/load in {build_dir} failed: {_short(text)}", text)
    try:
        for ops in OP_FAMILIES.values():
            for op in ops:
                getattr(torch.ops.mosel, op)
    except (AttributeError, RuntimeError) as exc:
        return _fail(f"library loaded but torch.ops.mosel is incomplete: {exc}")
    from mosel.ops import fake  # noqa: F401  (registers the fake kernels on import)

    _loaded = True
    return True


def load_ops() -> bool:
    """Build (once, cached on disk) and load the extension. True when torch.ops.mosel.*
    can be used; False (after one logged warning per process) when callers must fall back
    to the reference implementation. Idempotent and thread-safe."""
    global _attempted
    if _attempted:
        return _loaded
    with _lock:
        if not _attempted:
            try:
                _build_and_load()
            finally:
                _attempted = True
    return _loaded


def ops_available() -> bool:
    """Whether torch.ops.mosel.* is loaded now. Does not build; call load_ops() for that."""
    return _loaded


def build_error() -> str | None:
    """Why the extension is unavailable: the reason (first line), then the full build
    output if any. None when loaded or not tried yet."""
    return _error


def build_directory() -> Path | None:
    """Build directory of the last load attempt."""
    return _build_dir
