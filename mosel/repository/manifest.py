"""The manifest of one model version in a repository: `<repository>/<model>/<version>/manifest.json`.

Parsing checks every field and names the one at fault (`modalities[1].shape`), so a user
who wrote the file by hand learns what to fix without reading our code. Unknown keys are
errors (a typo must not silently fall back to a default). The format is documented in
docs/models.md; `ModelVersion.served_manifest()` turns it into the manifest dict that the
services and the profile store already use for trained packs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosel.modalities import all_configurations
from mosel.models.pack import ModalitySpec, TensorSpec

MANIFEST = "manifest.json"
FORMAT = "mosel-model/1"
ARTIFACT_SUFFIXES = (".pt2", ".pt", ".onnx")  # .onnx needs onnxruntime installed
# What the batching ops accept as item dtypes (mosel.ops.ragged); the wire knows more.
ITEM_DTYPES = ("uint8", "float16", "float32")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")

_TOP = {"format": True, "name": True, "labels": True, "embed_dim": True, "modalities": True,
        "fusion_head": True, "max_batch": False, "description": False, "artifacts": False, "source": False}
_MODALITY = {"name": True, "dtype": True, "shape": True, "encoder": True, "sequence": False, "mean": False,
             "std": False, "max_steps": False, "description": False}


class ManifestError(ValueError):
    """A repository entry is unusable; names the file and the field at fault."""

    def __init__(self, path: str | Path, field: str, message: str):
        self.path, self.field, self.message = str(path), field, message
        super().__init__(f"{self.path}: {field}: {message}" if field else f"{self.path}: {message}")


@dataclass(frozen=True)
class ModalityEntry:
    spec: ModalitySpec
    encoder: str  # artifact file, relative to the version directory


@dataclass(frozen=True)
class ModelVersion:
    """A parsed, checked manifest and where it lives."""

    directory: Path
    name: str
    version: int
    labels: tuple[str, ...]
    embed_dim: int
    max_batch: int
    modalities: tuple[ModalityEntry, ...]
    fusion_head: str
    description: str
    raw: dict

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.spec.name for m in self.modalities)

    def artifact_path(self, relative: str) -> Path:
        return self.directory / relative

    def artifact_fields(self) -> list[tuple[str, str]]:
        """(field, relative file) of every artifact, encoders first."""
        rows = [(f"modalities[{i}].encoder", m.encoder) for i, m in enumerate(self.modalities)]
        return rows + [("fusion_head", self.fusion_head)]

    def digest(self) -> str:
        """sha256 naming this exact version: the manifest's bytes and every artifact's bytes.

        The profile store keys profiles by it (as `checkpoint_sha256`), so a profile measured
        on one version is never applied to another."""
        h = hashlib.sha256(self.manifest_path.read_bytes())
        for field, relative in self.artifact_fields():
            path = self.artifact_path(relative)
            if not path.is_file():
                raise ManifestError(path, field, "artifact file is missing")
            h.update(relative.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()

    def served_manifest(self, digest: str | None = None) -> dict[str, Any]:
        """The manifest dict the services use (the shape `mosel train` writes for packs)."""
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "labels": list(self.labels),
            "size": {"version": self.version},
            "modalities": [
                {"name": m.spec.name, "description": m.spec.description, "dtype": m.spec.spec.dtype,
                 "shape": list(m.spec.spec.shape), "sequence": m.spec.spec.sequence, "mean": m.spec.spec.mean,
                 "std": m.spec.spec.std, "max_steps": m.spec.spec.max_steps}
                for m in self.modalities
            ],
            "configurations": all_configurations(self.modality_names),
            "checkpoint": {"file": str(self.directory), "sha256": digest or self.digest()},
            "repository": {"directory": str(self.directory), "version": self.version},
            "max_batch": self.max_batch,
            "source": self.raw.get("source", {}),
        }


def _unknown_keys(path: Path, prefix: str, obj: dict, known: dict[str, bool]) -> None:
    for key in obj:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
            raise ManifestError(path, f"{prefix}{key}", f"unknown field{hint}")
    for key, required in known.items():
        if required and key not in obj:
            raise ManifestError(path, f"{prefix}{key}", "missing (required)")


def _int(path, field, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ManifestError(path, field, f"must be an integer >= {low}, got {value!r}")
    return value


def _number(path, field, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(path, field, f"must be a finite number, got {value!r}")
    return float(value)


def _text(path, field, value, allow_empty=False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise ManifestError(path, field, f"must be a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    return value


def _artifact(path: Path, field: str, value) -> str:
    rel = _text(path, field, value)
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise ManifestError(path, field, f"must be a file inside the version directory, got {rel!r}")
    if Path(rel).suffix not in ARTIFACT_SUFFIXES:
        raise ManifestError(path, field, f"{rel!r}: artifact must end in {', '.join(ARTIFACT_SUFFIXES)} "
                                         "(torch.export program, TorchScript, ONNX)")
    return rel


def check_model_name(path, field: str, name) -> str:
    name = _text(path, field, name)
    if not set(name) <= NAME_CHARS or name[0] in "-_.":
        raise ManifestError(path, field, f"{name!r}: use lower-case letters, digits, '-', '_' and '.', "
                                         "starting with a letter or digit")
    return name


def _modality(path: Path, i: int, obj) -> ModalityEntry:
    prefix = f"modalities[{i}]."
    if not isinstance(obj, dict):
        raise ManifestError(path, f"modalities[{i}]", "must be an object")
    _unknown_keys(path, prefix, obj, _MODALITY)
    name = _text(path, prefix + "name", obj["name"])
    if "+" in name or not name.strip() or name != name.strip():
        raise ManifestError(path, prefix + "name", f"{name!r}: no '+' (it joins configuration names) or spaces")
    dtype = obj["dtype"]
    if dtype not in ITEM_DTYPES:
        raise ManifestError(path, prefix + "dtype", f"must be one of {', '.join(ITEM_DTYPES)}, got {dtype!r}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not shape or any(isinstance(d, bool) or not isinstance(d, int) for d in shape):
        raise ManifestError(path, prefix + "shape", f"must be a non-empty list of integers, got {shape!r}")
    if any(d == 0 or d < -1 for d in shape):
        raise ManifestError(path, prefix + "shape", f"dims must be >= 1 or -1 (dynamic), got {shape!r}")
    sequence = obj.get("sequence", False)
    if not isinstance(sequence, bool):
        raise ManifestError(path, prefix + "sequence", f"must be true or false, got {sequence!r}")
    row = shape[1:] if sequence else shape
    if -1 in row:
        raise ManifestError(path, prefix + "shape", "only the sequence axis (dim 0 with \"sequence\": true) may be "
                                                   f"dynamic (-1); got {shape!r}")
    max_steps = _int(path, prefix + "max_steps", obj.get("max_steps", 0), 0)
    if sequence and shape[0] == -1 and max_steps < 1:
        raise ManifestError(path, prefix + "max_steps", "a dynamic sequence axis needs max_steps >= 1")
    std = _number(path, prefix + "std", obj.get("std", 1.0))
    if std <= 0:
        raise ManifestError(path, prefix + "std", f"must be > 0, got {std}")
    spec = TensorSpec(dtype, tuple(shape), sequence=sequence, mean=_number(path, prefix + "mean", obj.get("mean", 0.0)),
                      std=std, max_steps=max_steps)
    description = _text(path, prefix + "description", obj.get("description", ""), allow_empty=True)
    return ModalityEntry(ModalitySpec(name, spec, description), _artifact(path, prefix + "encoder", obj["encoder"]))


def parse_manifest(directory: str | Path, version: int | None = None) -> ModelVersion:
    """Read and check `<directory>/manifest.json` (ManifestError on any problem)."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(path, "", "missing: every version directory needs a manifest.json")
    try:
        obj = json.loads(path.read_text())
    except UnicodeDecodeError as exc:
        raise ManifestError(path, "", f"not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(path, "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise ManifestError(path, "", "must hold a JSON object")
    _unknown_keys(path, "", obj, _TOP)
    if obj["format"] != FORMAT:
        raise ManifestError(path, "format", f"must be {FORMAT!r}, got {obj['format']!r}")
    name = check_model_name(path, "name", obj["name"])
    if directory.parent.name and directory.parent.name != name:
        raise ManifestError(path, "name", f"{name!r} differs from the model directory {directory.parent.name!r}")
    labels = obj["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise ManifestError(path, "labels", "must list at least two non-empty class names")
    if len(set(labels)) != len(labels):
        raise ManifestError(path, "labels", "class names must be distinct")
    mods = obj["modalities"]
    if not isinstance(mods, list) or not mods:
        raise ManifestError(path, "modalities", "must be a non-empty list")
    modalities = tuple(_modality(path, i, m) for i, m in enumerate(mods))
    names = [m.spec.name for m in modalities]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ManifestError(path, f"modalities[{i}].name", f"{n!r} appears twice")
    if version is None:
        try:
            version = int(directory.name)
        except ValueError:
            version = 0
    return ModelVersion(
        directory=directory, name=name, version=version, labels=tuple(labels),
        embed_dim=_int(path, "embed_dim", obj["embed_dim"], 1),
        max_batch=_int(path, "max_batch", obj.get("max_batch", 32), 1),
        modalities=modalities, fusion_head=_artifact(path, "fusion_head", obj["fusion_head"]),
        description=_text(path, "description", obj.get("description", ""), allow_empty=True), raw=obj,
    )


def manifest_document(name: str, labels, embed_dim: int, modalities: list[tuple[ModalitySpec, str]],
                      fusion_head: str, max_batch: int = 32, description: str = "",
                      source: dict | None = None, artifacts: dict | None = None) -> dict[str, Any]:
    """The JSON object `parse_manifest` reads (used by `mosel model export`)."""
    doc: dict[str, Any] = {"format": FORMAT, "name": name, "description": description, "labels": list(labels),
                           "embed_dim": int(embed_dim), "max_batch": int(max_batch), "modalities": []}
    for spec, encoder in modalities:
        doc["modalities"].append({
            "name": spec.name, "description": spec.description, "dtype": spec.spec.dtype,
            "shape": list(spec.spec.shape), "sequence": spec.spec.sequence, "mean": spec.spec.mean,
            "std": spec.spec.std, "max_steps": spec.spec.max_steps, "encoder": encoder})
    doc["fusion_head"] = fusion_head
    if artifacts:
        doc["artifacts"] = dict(artifacts)
    if source:
        doc["source"] = dict(source)
    return doc
