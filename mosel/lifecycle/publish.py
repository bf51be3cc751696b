"""Get a trained model into the profile store: train if needed, evaluate if needed,
register the manifest and the accuracy profile (skipped when the store already holds
records for the same checkpoint). Used by `mosel demo`, `mosel up` and tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc

from mosel.models.checkpoint import CheckpointError, checkpoint_sha256, load_state
from mosel.repository.layout import has_model
from mosel.repository.source import OpenedModel, open_model
from mosel.protocol.v1 import profile_store_pb2 as ps
from mosel.protocol.v1 import tensor_pb2

log = logging.getLogger(__name__)


def ensure_trained(model: str, home: Path, size: str | None = None, progress: bool = True,
                   repository=None) -> OpenedModel:
    """The model, opened. A repository model is used as it is; a pack is trained first when no
    valid checkpoint exists (missing, corrupt, or trained against modality specs the code no
    longer declares)."""
    if has_model(repository, model):
        return open_model(model, home=home, repository=repository)
    try:
        load_state(model, home=home)
        return open_model(model, home=home, repository=repository)
    except CheckpointError as exc:
        log.info("%s; training it now", exc)
    from mosel.lifecycle.train import train

    kwargs = {"size": size} if size else {}
    train(model, home=home, progress=progress, **kwargs)
    return open_model(model, home=home, repository=repository)


def ensure_evaluated(opened: OpenedModel) -> list[dict]:
    """Accuracy rows for exactly this model, evaluating a pack on its test split when they are
    missing or stale. A repository model has no data of ours: `mosel model eval` makes them."""
    try:
        return opened.accuracy()["configurations"]
    except CheckpointError as exc:
        if opened.version is not None:
            raise
        log.info("%s; evaluating now", exc)
    from mosel.lifecycle.evaluate import evaluate

    return evaluate(opened.name, home=opened.home)


def manifest_proto(manifest: dict) -> ps.ModelManifest:
    return ps.ModelManifest(
        name=manifest["name"],
        modalities=[
            ps.ModalityManifest(
                name=m["name"], description=m.get("description", ""),
                spec=tensor_pb2.TensorSpec(dtype=m["dtype"], shape=m["shape"], sequence=m.get("sequence", False),
                                           max_steps=m.get("max_steps", 0)))
            for m in manifest["modalities"]
        ],
        configurations=manifest["configurations"],
        labels=manifest["labels"],
        embed_dim=manifest["embed_dim"],
        checkpoint_sha256=checkpoint_sha256(manifest),
        manifest_json=json.dumps(manifest, sort_keys=True),
    )


def accuracy_proto(model: str, rows: list[dict], manifest: dict) -> ps.AccuracyProfile:
    return ps.AccuracyProfile(
        model=model,
        configurations=[
            ps.ConfigurationAccuracy(configuration=r["configuration"], accuracy=r["accuracy"], samples=r["n"],
                                     ci_low=r["ci_low"], ci_high=r["ci_high"])
            for r in rows
        ],
        split=json.dumps(manifest.get("data_split", {}), sort_keys=True),
        checkpoint_sha256=checkpoint_sha256(manifest),
        precision="fp32",
    )


def _latest_or_none(fetch, *args):
    try:
        return fetch(*args)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def publish(client, model: str, home: Path, size: str | None = None, progress: bool = True,
            repository=None) -> dict:
    """Train/evaluate as needed and make the store hold this model's manifest and accuracy.

    Returns {"manifest": version, "accuracy": version, "checkpoint_sha256": ..., "size": preset
    of the checkpoint served (or "v<N>" for a repository version)}."""
    opened = ensure_trained(model, home, size=size, progress=progress, repository=repository)
    manifest = opened.manifest
    sha = checkpoint_sha256(manifest)
    stored = _latest_or_none(client.get_model, model)
    if stored is None or stored.checkpoint_sha256 != sha:
        manifest_ref = client.register_model(manifest_proto(manifest))
        log.info("registered %s manifest v%d", model, manifest_ref.version)
        manifest_version = manifest_ref.version
    else:
        manifest_version = stored.ref.version
    accuracy = _latest_or_none(client.get_accuracy_profile, model)
    if accuracy is None or accuracy.checkpoint_sha256 != sha:
        rows = ensure_evaluated(opened)
        accuracy_version = client.put_accuracy_profile(accuracy_proto(model, rows, manifest)).version
        log.info("stored %s accuracy profile v%d", model, accuracy_version)
    else:
        accuracy_version = accuracy.ref.version
    size_name = f"v{opened.version.version}" if opened.version else manifest.get("size", {}).get("preset", "")
    return {"manifest": manifest_version, "accuracy": accuracy_version, "checkpoint_sha256": sha, "size": size_name}
