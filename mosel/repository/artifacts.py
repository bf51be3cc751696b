"""Model artifacts: one encoder or fusion head as one file, exported from a torch module and
loaded back without the model's Python code.

The contract (mosel.models.pack): an encoder maps `(x float32[K, L, row], lengths int64[K])`
to `float32[K, embed_dim]`; the fusion head maps `(emb float32[B, M, D], present bool[B, M])`
to logits `float32[B, C]`.

Formats, chosen by the file's suffix:

- `.pt2` (format "pt2", preferred): a `torch.export` program (`torch.export.save`), exported
  with a dynamic batch dimension (K or B: 1 and up, no upper bound) and, for a sequence
  modality, a dynamic step dimension L (1..`spec.max_steps`; unbounded when that is 0).
  The example batch has 3+ rows and 2+ steps, since torch.export specialises a dimension
  traced at size 1; the declared minimum of 1 makes batch 1 and L = 1 valid at run time.
  Loaded as `ExportedModule` (the program's own module refuses `eval()`).
- `.pt` (format "torchscript"): `torch.jit.script`, which compiles the module's Python control
  flow, so the eager code path (value checks, the video encoder's gather of valid frames)
  is kept and every shape stays dynamic. A module that does not script falls back to
  `torch.jit.trace` on a padded batch of mixed lengths; tracing freezes Python branches, so
  only the export check below stands between such a trace and a wrong artifact.
- `.onnx`: loaded through ONNX Runtime when `onnxruntime` is installed (it is optional;
  no exporter is offered here). Without it loading fails with an ArtifactError.

Every export writes a temporary file next to the target, loads it back as serving will and,
unless `check=False`, compares it with the eager module on random inputs (batch 1 and
`max_batch`; L = 1, a middle length and the longest for a sequence modality, padded batches
of mixed lengths; every non-empty `present` pattern for a fusion head) before an
`os.replace` puts it in place; the sha256 of the written file is returned.

Every failure to load is an ArtifactError naming the file and the manifest field, never a
raw traceback from torch.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from mosel.models.checkpoint import sha256_file
from mosel.models.pack import TensorSpec

FORMATS = {"pt2": ".pt2", "torchscript": ".pt"}  # export format -> suffix
SUFFIXES = (".pt2", ".pt", ".onnx")  # what load_artifact reads
_HINT = ("write artifacts with torch.export.save / torch.jit.save (or mosel.repository.artifacts."
         "export_encoder / export_fusion_head); a state dict saved with torch.save is not an artifact")

# export-time check tolerance: loose enough for reordered float sums, tight enough to catch a
# frozen branch or a specialised shape
_CHECK_RTOL = 1e-4
_CHECK_ATOL = 1e-4


class ArtifactError(Exception):
    """An artifact file cannot be exported, loaded or trusted; names the file and the field."""

    def __init__(self, path: str | os.PathLike, field: str = "", message: str = ""):
        self.path = str(path)
        self.field = field or ""
        self.message = message
        super().__init__(": ".join(part for part in (self.path, self.field, self.message) if part))


# ------------------------------------------------------------------ loading


class ExportedModule(nn.Module):
    """A loaded torch.export program as an ordinary module.

    The program was exported in eval mode; `eval()` is a no-op here (the unlifted program
    module raises on it) and `train(True)` raises, since an exported graph is inference only.
    Dtype casts are constants of the graph too, so it computes in float32 only."""

    float32_only = True

    def __init__(self, program: nn.Module, source: str = ""):
        super().__init__()
        self.program = program
        self.source = source
        self.training = False

    def forward(self, *args, **kwargs):
        return self.program(*args, **kwargs)

    def train(self, mode: bool = True) -> "ExportedModule":
        if mode:
            raise RuntimeError(f"{self.source or 'exported artifact'}: an exported program is inference only")
        self.training = False
        return self


class OnnxModule(nn.Module):
    """An ONNX Runtime session as a module: tensors in (any device), CPU inference, the first
    output back on the first input's device."""

    def __init__(self, session, source: str = ""):
        super().__init__()
        self.session = session
        self.source = source
        self.input_names = [i.name for i in session.get_inputs()]
        self.training = False

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        if len(args) != len(self.input_names):
            raise ValueError(f"{self.source}: the ONNX model takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}), got {len(args)}")
        feeds = {name: a.detach().cpu().contiguous().numpy() for name, a in zip(self.input_names, args)}
        out = self.session.run(None, feeds)[0]
        return torch.from_numpy(out).to(args[0].device)

    def train(self, mode: bool = True) -> "OnnxModule":
        if mode:
            raise RuntimeError(f"{self.source or 'ONNX artifact'}: an ONNX model is inference only")
        self.training = False
        return self


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).strip().splitlines()[:1]) or "(no message)"
    text = text.split(" This is an internal miniz error")[0]  # torch's boilerplate on a bad zip
    return f"{type(exc).__name__}: {text[:limit]}"


class _DeserializeFailure(logging.Filter):
    """Catches the traceback torch.export.load logs as a warning before it raises a generic
    "check the warnings above": the logged exception is the real cause."""

    def __init__(self):
        super().__init__()
        self.causes: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Ran into the following error when deserializing"):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            self.causes.append(record.exc_info[1])
        return False


def _load_pt2(path: Path, device: torch.device) -> nn.Module:
    logger = logging.getLogger("torch.export")
    failure = _DeserializeFailure()
    logger.addFilter(failure)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        if failure.causes:
            raise failure.causes[0] from exc
        raise
    finally:
        logger.removeFilter(failure)
    if device.type != "cpu":
        # devices are constants in an exported graph (torch.arange(..., device=cpu)): rewrite them
        program = torch.export.passes.move_to_device_pass(program, device)
    return ExportedModule(program.module(), str(path))


def _load_torchscript(path: Path, device: torch.device) -> nn.Module:
    with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it loads and runs fine
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def _load_onnx(path: Path, device: torch.device) -> nn.Module:
    import onnxruntime  # caller checked it imports

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return OnnxModule(session, str(path))


_LOADERS: dict[str, Callable[[Path, torch.device], nn.Module]] = {
    ".pt2": _load_pt2, ".pt": _load_torchscript, ".onnx": _load_onnx,
}
_KINDS = {".pt2": "a torch.export program (.pt2)", ".pt": "a TorchScript module (.pt)", ".onnx": "an ONNX model (.onnx)"}


def load_artifact(path: str | os.PathLike, field: str = "", *, device: str | torch.device = "cpu") -> nn.Module:
    """The module in an artifact file, in eval mode, callable as `encoder(x, lengths)` or
    `head(emb, present)` (also under torch.inference_mode).

    The suffix picks the format (`.pt2`, `.pt`, `.onnx`). Load on the serving `device` rather
    than moving the module later: a `.pt2` graph holds its devices as constants, which are
    rewritten here. Raises ArtifactError naming `path` and `field` for a missing file, an
    unknown suffix or a file that is not a model of its suffix's format."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _LOADERS:
        raise ArtifactError(p, field, f"unknown artifact suffix {p.suffix or '(none)'!r}; expected "
                                      ".pt2 (torch.export), .pt (TorchScript) or .onnx (ONNX Runtime)")
    if not p.exists():
        raise ArtifactError(p, field, "artifact file not found")
    if not p.is_file():
        raise ArtifactError(p, field, "is not a file")
    if suffix == ".onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ArtifactError(p, field, "ONNX artifacts need the optional package onnxruntime, which is not "
                                          "installed (pip install onnxruntime), or export the model to .pt2") from None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArtifactError(p, field, f"bad device {device!r} ({_first_line(exc)})") from None
    try:
        module = _LOADERS[suffix](p, dev)
    except Exception as exc:  # zip, pickle, flatbuffer, protobuf and torch errors come in many types
        raise ArtifactError(p, field, f"cannot load as {_KINDS[suffix]} ({_first_line(exc)}); {_HINT}") from None
    if not isinstance(module, nn.Module):
        raise ArtifactError(p, field, f"holds a {type(module).__name__}, not a module; {_HINT}")
    return module


# ------------------------------------------------------------------ exporting


def _example_size(avoid: Sequence[int], start: int = 3) -> int:
    """An example size >= 2 (>= start) unequal to the static dims, so no guard ties them."""
    n = max(2, start)
    while n in set(avoid):
        n += 1
    return n


def _random_batch(spec: TensorSpec, k: int, steps: int, gen: torch.Generator, mixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A packed batch as mosel.ops.batching makes it: normalised values, zeros after each length."""
    x = torch.randn(k, steps, spec.row_elems, generator=gen)
    if mixed and steps > 1:
        lengths = torch.randint(1, steps + 1, (k,), generator=gen)
        lengths[0] = steps
        if k > 1:
            lengths[1] = 1
    else:
        lengths = torch.full((k,), steps, dtype=torch.int64)
    x = x * (torch.arange(steps)[None, :, None] < lengths[:, None, None])
    return x, lengths.to(torch.int64)


def _encoder_cases(spec: TensorSpec, max_batch: int) -> list[tuple[int, int, bool]]:
    """(K, L, mixed lengths) the export check runs."""
    top = max(1, max_batch)
    if not spec.sequence:
        return [(1, 1, False), (top, 1, False)]
    longest = spec.max_steps or 16
    middle = max(1, min(longest, 7))
    cases = [(1, 1, False), (1, longest, False), (top, middle, True), (top, longest, True)]
    return list(dict.fromkeys(cases))


def _compare(path: Path, field: str, what: str, want: torch.Tensor, got, shape_note: str) -> None:
    if not isinstance(got, torch.Tensor):
        raise ArtifactError(path, field, f"exported {what} returns {type(got).__name__}, not a tensor ({shape_note})")
    if got.shape != want.shape or got.dtype != want.dtype:
        raise ArtifactError(path, field, f"exported {what} returns {got.dtype} {list(got.shape)}, the module "
                                         f"{want.dtype} {list(want.shape)} ({shape_note})")
    try:
        torch.testing.assert_close(got, want, rtol=_CHECK_RTOL, atol=_CHECK_ATOL, equal_nan=True)
    except AssertionError:
        diff = (got.double() - want.double()).abs().max().item()
        raise ArtifactError(path, field, f"exported {what} differs from the module ({shape_note}: max abs diff "
                                         f"{diff:.3g}); a traced data-dependent branch or a specialised shape?") from None


def _call(path: Path, field: str, what: str, fn: Callable, args, shape_note: str):
    try:
        with torch.inference_mode():
            return fn(*args)
    except Exception as exc:
        raise ArtifactError(path, field, f"{what} fails ({shape_note}): {_first_line(exc)}") from exc


def _write(module: nn.Module, example: tuple, dynamic_shapes: tuple, path: str | os.PathLike, format: str,
           field: str, check: Callable[[Path, nn.Module], None] | None) -> str:
    if format not in FORMATS:
        raise ValueError(f"unknown artifact format {format!r}; choose from {sorted(FORMATS)}")
    dest = Path(path)
    if dest.suffix.lower() != FORMATS[format]:
        raise ValueError(f"{dest}: a {format} artifact must end in {FORMATS[format]} (load_artifact goes by suffix)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if format == "pt2":
                try:
                    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
                except Exception as exc:
                    raise ArtifactError(dest, field, f"torch.export failed: {_first_line(exc, 2000)}") from exc
                save = lambda f: torch.export.save(program, f)  # noqa: E731
            else:
                try:
                    scripted = torch.jit.script(module)
                except Exception:
                    try:
                        scripted = torch.jit.trace(module, example, check_trace=False)
                    except Exception as exc:
                        raise ArtifactError(dest, field, f"neither torch.jit.script nor torch.jit.trace works: "
                                                         f"{_first_line(exc, 2000)}") from exc
                save = lambda f: torch.jit.save(scripted, f)  # noqa: E731
        # the temporary name keeps the suffix: torch.export.load insists on ".pt2"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                save(f)
                f.flush()
                os.fsync(f.fileno())
            if check is not None:
                try:
                    loaded = _LOADERS[FORMATS[format]](tmp, torch.device("cpu"))
                except Exception as exc:
                    raise ArtifactError(dest, field, f"the written artifact does not load back: {_first_line(exc)}") from exc
                check(dest, loaded)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    finally:
        module.train(was_training)
    return sha256_file(dest)


def export_encoder(module: nn.Module, spec: TensorSpec, path: str | os.PathLike, *, max_batch: int = 32,
                   format: str = "pt2", check: bool = True, field: str = "") -> str:
    """Write `module` (an encoder for a modality with wire spec `spec`) to `path`; returns its sha256.

    pt2: dynamic K (1..unbounded) and, when `spec.sequence`, dynamic L (1..`spec.max_steps`).
    torchscript: torch.jit.script (falls back to trace). `check` compares the written artifact
    with the module at K = 1 and `max_batch` (see the module doc); `field` names the manifest
    field in errors. The module is exported in eval mode (its mode is restored afterwards)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    row = spec.row_elems
    k = _example_size([row])
    if spec.sequence and spec.max_steps != 1:
        steps = _example_size([row, k], start=5)
        if spec.max_steps:
            steps = min(steps, spec.max_steps)
            if steps in (k, row):  # tiny max_steps: move K instead
                k = _example_size([row, steps], start=steps + 1)
    else:
        steps = 1
    gen = torch.Generator().manual_seed(0)
    example = _random_batch(spec, k, steps, gen, mixed=True)
    batch = torch.export.Dim("batch", min=1)
    x_dims: dict[int, object] = {0: batch}
    if steps > 1:
        x_dims[1] = torch.export.Dim("steps", min=1, max=spec.max_steps) if spec.max_steps else torch.export.Dim("steps", min=1)
    dynamic_shapes = (x_dims, {0: batch})

    def check_encoder(dest: Path, loaded: nn.Module) -> None:
        gen = torch.Generator().manual_seed(1)
        for kk, ll, mixed in _encoder_cases(spec, max_batch):
            x, lengths = _random_batch(spec, kk, ll, gen, mixed)
            note = f"K={kk}, L={ll}" + (", mixed lengths" if mixed else "")
            want = _call(dest, field, "the module", module, (x, lengths), note)
            got = _call(dest, field, "the exported encoder", loaded, (x, lengths), note)
            _compare(dest, field, "encoder", want, got, note)

    return _write(module, example, dynamic_shapes, path, format, field, check_encoder if check else None)


def present_patterns(num_modalities: int) -> torch.Tensor:
    """Every non-empty presence pattern: bool [2^M - 1, M]."""
    rows = [bits for bits in itertools.product((False, True), repeat=num_modalities) if any(bits)]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(rows), num_modalities)


def _random_present(b: int, m: int, gen: torch.Generator) -> torch.Tensor:
    present = torch.rand(b, m, generator=gen) < 0.5
    empty = ~present.any(dim=1)
    present[empty, torch.randint(0, m, (int(empty.sum()),), generator=gen)] = True
    return present


def export_fusion_head(module: nn.Module, num_modalities: int, embed_dim: int, path: str | os.PathLike, *,
                       max_batch: int = 32, format: str = "pt2", check: bool = True, field: str = "") -> str:
    """Write `module` (a fusion head over `num_modalities` embeddings of `embed_dim`) to `path`;
    returns its sha256.

    pt2: dynamic B (1..unbounded). torchscript: torch.jit.script (falls back to trace). `check`
    compares the written artifact with the module on every non-empty `present` pattern, at
    B = 1 and at `max_batch` (absent rows hold garbage, which a head must not read)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if num_modalities < 1 or embed_dim < 1:
        raise ValueError(f"num_modalities and embed_dim must be >= 1, got {num_modalities}, {embed_dim}")
    m, d = num_modalities, embed_dim
    b = _example_size([m, d])
    gen = torch.Generator().manual_seed(0)
    example = (torch.randn(b, m, d, generator=gen), _random_present(b, m, gen))
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = ({0: batch}, {0: batch})

    def check_head(dest: Path, loaded: nn.Module) -> None:
        gen = torch.Generator().manual_seed(1)
        patterns = present_patterns(m)
        cases = [(p[None], f"B=1, present={p.int().tolist()}") for p in patterns]
        cases.append((patterns, f"B={len(patterns)}, every non-empty present pattern"))
        cases.append((_random_present(max(1, max_batch), m, gen), f"B={max(1, max_batch)}, random present"))
        for present, note in cases:
            emb = torch.randn(present.shape[0], m, d, generator=gen)
            emb = torch.where(present[..., None], emb, 1e3 * torch.randn(emb.shape, generator=gen))  # garbage if absent
            want = _call(dest, field, "the module", module, (emb, present), note)
            got = _call(dest, field, "the exported fusion head", loaded, (emb, present), note)
            _compare(dest, field, "fusion head", want, got, note)

    return _write(module, example, dynamic_shapes, path, format, field, check_head if check else None)
