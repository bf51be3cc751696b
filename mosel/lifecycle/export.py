"""`mosel model export`: a trained pack (built-in or plug-in) to a new repository version.

Layout written (atomically: built in a temporary directory beside it, then renamed):

    <repository>/<name>/<version>/manifest.json
    <repository>/<name>/<version>/encoders/<modality>.pt2     (or .pt for TorchScript)
    <repository>/<name>/<version>/fusion_head.pt2
    <repository>/<name>/<version>/data/test.npz               (with_data, packs that bring test data)

The manifest records each artifact's sha256 and where the weights came from (pack, size,
checkpoint sha256), so a served version can be traced back to its training run.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mosel.models import checkpoint as ckpt
from mosel.repository import layout
from mosel.repository.artifacts import ArtifactError, export_encoder, export_fusion_head
from mosel.repository.data import save_labelled
from mosel.repository.manifest import MANIFEST, check_model_name, manifest_document

SUFFIX = {"pt2": ".pt2", "torchscript": ".pt"}
# "auto": TorchScript where the module scripts (or traces) and reproduces the module's outputs
# (docs/results.md: it runs 1.1-1.9x faster than eager on CPU, a .pt2 program 0.4-0.9x),
# else a torch.export program.
FORMATS = ("auto", *SUFFIX)
TEST_DATA = "data/test.npz"
log = logging.getLogger(__name__)


def _readable(folder: Path) -> None:
    """Temporary files and directories are private; a version is read by every service user."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _export(write, staging: Path, stem: str, format: str) -> tuple[str, str]:
    """(relative file, sha256) of one artifact written by `write(path, format)`."""
    (staging / stem).parent.mkdir(parents=True, exist_ok=True)
    if format != "auto":
        relative = stem + SUFFIX[format]
        return relative, write(staging / relative, format)
    try:
        return stem + ".pt", write(staging / (stem + ".pt"), "torchscript")
    except ArtifactError as exc:
        log.info("%s: TorchScript failed (%s); exporting a torch.export program", stem, exc.message)
        (staging / (stem + ".pt")).unlink(missing_ok=True)
        return stem + ".pt2", write(staging / (stem + ".pt2"), "pt2")


def export_pack(name: str, home=None, repository=None, *, as_name: str | None = None, version: int | None = None,
                format: str = "auto", max_batch: int = 32, with_data: bool = False,
                data_limit: int | None = None) -> Path:
    """Export the trained pack `name` (from `home`) as `as_name` (default `name`) version
    `version` (default: the next one); returns the version directory."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    target = check_model_name("--as", "name", as_name or name)
    root = layout.repository_path(repository)
    version = version or layout.next_version(root, target)
    final = root / target / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are immutable -- export to a new version")
    pack, encoders, head = ckpt.load_model(name, home)
    manifest = ckpt.load_manifest(name, home)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        artifacts, modalities = {}, []
        for i, m in enumerate(pack.modalities):
            relative, artifacts[relative] = _export(
                lambda path, fmt: export_encoder(encoders[m.name], m.spec, path, max_batch=max_batch, format=fmt,
                                                 field=f"modalities[{i}].encoder"),
                staging, f"encoders/{m.name}", format)
            modalities.append((m, relative))
        head_file, artifacts[head_file] = _export(
            lambda path, fmt: export_fusion_head(head, len(pack.modalities), pack.embed_dim, path, max_batch=max_batch,
                                                 format=fmt, field="fusion_head"),
            staging, "fusion_head", format)
        source = {"pack": name, "size": manifest.get("size", {}), "checkpoint_sha256": ckpt.checkpoint_sha256(manifest),
                  "format": format, "code_version": ckpt.code_version(),
                  "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        document = manifest_document(target, pack.labels, pack.embed_dim, modalities, head_file, max_batch=max_batch,
                                     description=f"exported from the {name} pack", source=source, artifacts=artifacts)
        ckpt.write_json(staging / MANIFEST, document)
        if with_data:
            try:
                samples = pack.test_samples(limit=data_limit)
            except NotImplementedError:
                samples = None
            if samples:
                save_labelled(staging / TEST_DATA, pack, samples)
        _readable(staging)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
