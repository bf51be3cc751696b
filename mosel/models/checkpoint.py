"""Saving and loading trained model packs.

Layout: `<home>/models/<name>/` (home defaults to mosel.config.mosel_home()) holds
- `checkpoint.pt`: state dicts only, {"format", "encoders": {modality: state}, "fusion_head": state},
  read back with torch.load(weights_only=True);
- `manifest.json`: pack.describe() plus data split, seed, code version, training
  hyper-parameters, sha256 of checkpoint.pt, train time and creation time;
- `accuracy.json` (written by mosel.lifecycle.evaluate): per-configuration test accuracy.

Anything missing or corrupt raises CheckpointError, whose message names the path and the
command that creates it (`mosel train --model <name>`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import mosel
from mosel.config import mosel_home, repo_root
from mosel.models.registry import get_pack
from mosel.models.pack import ModelPack

FORMAT = 1
CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"
ACCURACY = "accuracy.json"


class CheckpointError(RuntimeError):
    """A trained model is missing, unreadable or does not match its pack."""


def _hint(name: str) -> str:
    return f"create it with `mosel train --model {name}`"


def model_dir(name: str, home: str | os.PathLike | None = None) -> Path:
    base = Path(home) if home is not None else mosel_home()
    return base / "models" / name


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> dict[str, str]:
    """mosel.__version__ plus the git commit of the checkout ("unknown" when not a git checkout)."""
    commit = "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root()), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"mosel": mosel.__version__, "git_commit": commit}


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()))


def save_model(
    pack: ModelPack,
    encoders: Mapping[str, nn.Module],
    fusion_head: nn.Module,
    *,
    seed: int,
    hyperparameters: Mapping[str, Any],
    data_split: Mapping[str, Any],
    train_time_s: float,
    home: str | os.PathLike | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write checkpoint.pt and manifest.json for `pack` (atomically); returns the model dir.

    A stale accuracy.json from an earlier training run is removed."""
    missing = [m for m in pack.modality_names if m not in encoders]
    if missing:
        raise ValueError(f"save_model: no encoder for modalities {missing}")
    folder = model_dir(pack.name, home)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "encoders": {m: {k: v.detach().cpu() for k, v in encoders[m].state_dict().items()} for m in pack.modality_names},
        "fusion_head": {k: v.detach().cpu() for k, v in fusion_head.state_dict().items()},
    }
    ckpt = folder / CHECKPOINT
    _atomic_write(ckpt, lambda f: torch.save(state, f))
    manifest = pack.describe()
    manifest.update(
        {
            "format": FORMAT,
            "data_split": dict(data_split),
            "seed": int(seed),
            "code_version": code_version(),
            "hyperparameters": dict(hyperparameters),
            "checkpoint": {"file": CHECKPOINT, "sha256": sha256_file(ckpt), "bytes": ckpt.stat().st_size},
            "train_time_s": round(float(train_time_s), 3),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if extra:
        manifest.update(dict(extra))
    (folder / ACCURACY).unlink(missing_ok=True)
    write_json(folder / MANIFEST, manifest)
    return folder


_REQUIRED = ("name", "size", "modalities", "checkpoint", "seed", "code_version", "hyperparameters")


def checkpoint_sha256(manifest: Mapping[str, Any]) -> str:
    """sha256 of the checkpoint a manifest describes."""
    return manifest["checkpoint"]["sha256"]


def load_manifest(name: str, home: str | os.PathLike | None = None) -> dict:
    path = model_dir(name, home) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"no trained model {name!r}: {path} is missing; {_hint(name)}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"manifest {path} is unreadable ({exc}); {_hint(name)}") from None
    missing = [k for k in _REQUIRED if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise CheckpointError(f"manifest {path} lacks {missing}; {_hint(name)}")
    if manifest["name"] != name:
        raise CheckpointError(f"manifest {path} is for model {manifest['name']!r}, not {name!r}; {_hint(name)}")
    return manifest


def load_pack_from_manifest(manifest: Mapping[str, Any]) -> ModelPack:
    """Rebuild the pack with the recorded size knobs; its wire specs must match the manifest."""
    name = manifest["name"]
    try:
        pack = get_pack(name, **manifest["size"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"manifest for {name!r} records size knobs the code rejects ({exc}); {_hint(name)}") from None
    if pack.describe()["modalities"] != manifest["modalities"]:
        raise CheckpointError(
            f"model {name!r} was trained with other modality specs than the code now declares "
            f"(normalisation or shapes changed since); {_hint(name)}"
        )
    return pack


def load_state(name: str, home: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> tuple[ModelPack, dict]:
    """(pack, verified checkpoint dict). Checks the sha256 and the structure."""
    manifest = load_manifest(name, home)
    pack = load_pack_from_manifest(manifest)
    path = model_dir(name, home) / manifest["checkpoint"].get("file", CHECKPOINT)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing; {_hint(name)}")
    digest = sha256_file(path)
    if digest != manifest["checkpoint"].get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt (sha256 does not match its manifest); {_hint(name)}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); {_hint(name)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "fusion_head" not in state:
        raise CheckpointError(f"checkpoint {path} is not a format-{FORMAT} mosel checkpoint; {_hint(name)}")
    enc = state.get("encoders")
    missing = [m for m in pack.modality_names if not isinstance(enc, dict) or m not in enc]
    if missing:
        raise CheckpointError(f"checkpoint {path} has no weights for modalities {missing}; {_hint(name)}")
    return pack, state


def _load_into(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, name: str, home) -> nn.Module:
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        path = model_dir(name, home) / CHECKPOINT
        detail = " ".join(str(exc).split())  # one line
        raise CheckpointError(f"checkpoint {path}: {what} weights do not fit the model ({detail}); {_hint(name)}") from None
    return module


def load_encoder(
    name: str, modality: str, home: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[ModelPack, nn.Module]:
    """(pack, trained encoder for `modality` in eval mode on `device`). Unknown modality -> KeyError."""
    pack, state = load_state(name, home, device)
    if modality not in pack.modality_names:
        raise KeyError(f"model {name!r} has no modality {modality!r}; it has {list(pack.modality_names)}")
    enc = _load_into(pack.build_encoder(modality), state["encoders"][modality], f"{modality} encoder", name, home)
    return pack, enc.to(device).eval()


def load_fusion_head(
    name: str, home: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[ModelPack, nn.Module]:
    """(pack, trained fusion head in eval mode on `device`)."""
    pack, state = load_state(name, home, device)
    head = _load_into(pack.build_fusion_head(), state["fusion_head"], "fusion head", name, home)
    return pack, head.to(device).eval()


def load_model(
    name: str, home: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> tuple[ModelPack, dict[str, nn.Module], nn.Module]:
    """(pack, {modality: encoder}, fusion head), all in eval mode, from one checkpoint read."""
    pack, state = load_state(name, home, device)
    encoders = {
        m: _load_into(pack.build_encoder(m), state["encoders"][m], f"{m} encoder", name, home).to(device).eval()
        for m in pack.modality_names
    }
    head = _load_into(pack.build_fusion_head(), state["fusion_head"], "fusion head", name, home).to(device).eval()
    return pack, encoders, head


def load_accuracy(name: str, home: str | os.PathLike | None = None) -> dict:
    """accuracy.json written by `mosel eval` (CheckpointError if absent or stale)."""
    manifest = load_manifest(name, home)
    path = model_dir(name, home) / ACCURACY
    if not path.is_file():
        raise CheckpointError(f"no accuracy profile {path}; create it with `mosel eval --model {name}`")
    try:
        acc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"accuracy profile {path} is unreadable ({exc}); rerun `mosel eval --model {name}`") from None
    if acc.get("checkpoint_sha256") != manifest["checkpoint"].get("sha256"):
        raise CheckpointError(f"accuracy profile {path} is for another checkpoint; rerun `mosel eval --model {name}`")
    return acc
