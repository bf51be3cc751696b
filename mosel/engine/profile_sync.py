"""Keep each served model's profiles in step with the profile store.

At start the latest records are read; a watch stream then reloads a record whenever
a new version is written, so a fresh `mosel eval` / `mosel solve` / tuning study is
picked up without a restart. If the stream breaks, it reconnects and resumes from
the last sequence number seen, so no version is missed.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from mosel.engine.served_model import ServedModel
from mosel.protocol.v1 import profile_store_pb2 as ps

log = logging.getLogger(__name__)

KIND = ps.RecordKind


def _latest(fetch, model: str):
    try:
        return fetch(model)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def load_accuracy(client, model: ServedModel) -> None:
    profile = _latest(client.get_accuracy_profile, model.name)
    if profile is None:
        log.warning("%s: no accuracy profile in the store yet (run `mosel eval`); floors cannot be served", model.name)
        return
    served = model.digest
    if profile.checkpoint_sha256 and served and profile.checkpoint_sha256 != served:
        # measured on other weights (a retrained pack, another repository version): its
        # numbers say nothing about the model served, so the guarantee cannot rest on them
        log.warning("%s: accuracy profile v%d is for checkpoint %s, not the served %s; ignored", model.name,
                    profile.ref.version, profile.checkpoint_sha256[:12], served[:12])
        return
    model.update_profiles(
        accuracy={c.configuration: c.accuracy for c in profile.configurations},
        accuracy_detail={c.configuration: c for c in profile.configurations},
        accuracy_version=profile.ref.version,
    )
    log.info("%s: accuracy profile v%d loaded", model.name, profile.ref.version)


# Precision of the strategy matrix to serve ("" = the latest matrix of any precision). A
# deployment whose encoders run at fp16 sets this to "fp16" before ProfileSync starts.
MATRIX_PRECISION = ""


def load_matrix(client, model: ServedModel) -> None:
    """Latest strategy matrix -> matrix, its version, the cost model it was solved with and
    the latency profile version behind it (one atomic swap)."""
    from mosel.planning.costs import CostModel
    from mosel.protocol.records import matrix_from_proto

    msg = _latest(lambda name: client.get_strategy_matrix(name, variant=MATRIX_PRECISION), model.name)
    if msg is None:
        log.warning("%s: no strategy matrix in the store yet (run `mosel profile` and `mosel solve`)", model.name)
        return
    if msg.accuracy_profile_version < model.profiles.min_matrix_accuracy_version:
        log.warning("%s: strategy matrix v%d was solved for the previous weights; waiting for `mosel solve`",
                    model.name, msg.ref.version)
        return
    try:
        matrix = matrix_from_proto(msg)
        cost = CostModel.from_dict(matrix.cost)
    except ValueError as exc:  # keep serving what we had rather than a matrix we cannot read
        log.error("%s: strategy matrix v%d is unusable (%s); keeping v%d", model.name, msg.ref.version, exc,
                  model.profiles.matrix_version)
        return
    model.update_profiles(
        matrix=matrix,
        matrix_version=msg.ref.version,
        cost=cost,
        latency_version=msg.latency_profile_version,
    )
    log.info("%s: strategy matrix v%d loaded (%s, latency profile v%d, accuracy profile v%d)", model.name,
             msg.ref.version, msg.precision, msg.latency_profile_version, msg.accuracy_profile_version)


def load_tuning(client, model: ServedModel) -> None:
    record = _latest(client.get_tuning, model.name)
    if record is None:
        return  # defaults stay in force; nothing to warn about
    model.update_profiles(thresholds=dict(record.thresholds), tuning_version=record.ref.version)
    log.info("%s: tuned thresholds v%d loaded (study %s): %s", model.name, record.ref.version, record.study,
             dict(record.thresholds))


# Record kind -> loader.
LOADERS = {
    KIND.RECORD_KIND_ACCURACY_PROFILE: load_accuracy,
    KIND.RECORD_KIND_STRATEGY_MATRIX: load_matrix,
    KIND.RECORD_KIND_TUNING: load_tuning,
}


def swap_version(client, model: ServedModel, find) -> bool:
    """Serve the weights the store's latest manifest names, when they differ from the served
    ones and `find(name, digest)` finds them; then their own profiles. True if swapped."""
    record = _latest(client.get_model, model.name)
    if record is None or not record.checkpoint_sha256 or record.checkpoint_sha256 == model.digest:
        return False
    opened = find(model.name, record.checkpoint_sha256)
    if opened is None:
        log.warning("%s: the store's manifest v%d names weights %s, which this service cannot find; serving %s",
                    model.name, record.ref.version, record.checkpoint_sha256[:12], model.digest[:12])
        return False
    model.swap(opened)
    # the first accuracy profile of the new weights: the latest one if it is theirs, else
    # the next one written; a matrix solved from anything older is for the old weights
    accuracy = _latest(client.get_accuracy_profile, model.name)
    floor = 1 if accuracy is None else accuracy.ref.version + (accuracy.checkpoint_sha256 != opened.digest)
    model.update_profiles(min_matrix_accuracy_version=floor)
    load_accuracy(client, model)
    load_matrix(client, model)
    load_tuning(client, model)
    log.info("%s: now serving %s (weights %s)", model.name, opened.where, opened.digest[:12])
    return True


class ProfileSync:
    def __init__(self, client, models: dict[str, ServedModel], find=None):
        """`find(name, digest)` opens other weights of a model (see swap_version); None: the
        service keeps the weights it started with (a pinned version)."""
        self.client = client
        self.models = models
        self.find = find
        self._stop = threading.Event()
        self._stream = None
        self._thread: threading.Thread | None = None

    def load_all(self) -> None:
        for model in self.models.values():
            for loader in LOADERS.values():
                loader(self.client, model)

    def start(self, after_seq: int = 0) -> None:
        self._thread = threading.Thread(target=self._watch, args=(after_seq,), name="profile-watch", daemon=True)
        self._thread.start()

    def _watch(self, after_seq: int) -> None:
        while not self._stop.is_set():
            try:
                kinds = list(LOADERS) + ([KIND.RECORD_KIND_MODEL] if self.find is not None else [])
                self._stream = self.client.watch(models=list(self.models), kinds=kinds, after_seq=after_seq)
                for event in self._stream:
                    after_seq = max(after_seq, event.ref.seq)
                    model = self.models.get(event.ref.model)
                    loader = LOADERS.get(event.ref.kind)
                    if model and event.ref.kind == KIND.RECORD_KIND_MODEL:
                        swap_version(self.client, model, self.find)
                    elif model and loader:
                        log.info("%s: new %s v%d", model.name, KIND.Name(event.ref.kind), event.ref.version)
                        loader(self.client, model)
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                log.warning("profile watch interrupted (%s); reconnecting", exc.code().name)
                time.sleep(1.0)
            except Exception:  # noqa: BLE001 - a bad record must not kill the watcher
                log.exception("profile watch failed; reconnecting")
                time.sleep(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._stream is not None:
            try:
                self._stream.cancel()
            except Exception:  # noqa: BLE001
                pass
