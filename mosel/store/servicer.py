"""ProfileStoreService: the gRPC face of the versioned store (protos/mosel/protocol/v1/profile_store.proto).

Writes validate against the model's latest manifest (mosel.store.validate) and store
the message as protobuf JSON with `ref` cleared; reads parse it back and fill `ref`
from the row. Variants: latency profiles "<device kind>-<precision>" (e.g. "cuda-fp16"),
accuracy profiles and strategy matrices their precision, manifests and tuning none.

Watch streams new versions. It polls the database (so writes by other store processes
sharing one PostgreSQL are seen within `poll_interval_s`) and is woken at once by
writes made through this servicer. A stream ends when the client cancels or when
`close()` is called (the server's drain hook), so no thread outlives its call.

Each open Watch holds one of the server's handler threads for as long as it runs. So that
idle watchers can never starve reads and health checks, at most `max_watch_streams` run at
once (more are refused with RESOURCE_EXHAUSTED; ProfileSync retries) and the store's server
gets that many threads on top of its usual pool (services/profile_store), not out of it.
"""

from __future__ import annotations

import logging
import threading

from google.protobuf import json_format
from google.protobuf.message import Message

from mosel.errors import InvalidArgument, NotFound, ResourceExhausted, check_length, grpc_errors
from mosel.store import db, validate
from mosel.store.settings import DEFAULT_MAX_WATCH_STREAMS
from mosel.protocol.v1 import profile_store_pb2 as pb
from mosel.protocol.v1 import profile_store_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ProfileStoreService"].full_name

KIND_TO_DB: dict[int, str] = {
    pb.RECORD_KIND_MODEL: db.MODEL,
    pb.RECORD_KIND_LATENCY_PROFILE: db.LATENCY_PROFILE,
    pb.RECORD_KIND_ACCURACY_PROFILE: db.ACCURACY_PROFILE,
    pb.RECORD_KIND_STRATEGY_MATRIX: db.STRATEGY_MATRIX,
    pb.RECORD_KIND_TUNING: db.TUNING,
}
DB_TO_KIND: dict[str, int] = {v: k for k, v in KIND_TO_DB.items()}

WATCH_BATCH = 500
# Initial metadata of a Watch stream: the seq it starts after.
WATCH_SEQ_METADATA = "mosel-watch-after-seq"


def ref_to_proto(ref: db.VersionRef) -> pb.VersionRef:
    return pb.VersionRef(model=ref.model, kind=DB_TO_KIND[ref.kind], version=ref.version, variant=ref.variant,
                         seq=ref.seq, created_unix_ms=ref.created_unix_ms)


def kind_from_proto(kind: int, field: str = "kind") -> str:
    if kind == pb.RECORD_KIND_UNSPECIFIED:
        raise InvalidArgument(field, "missing (RECORD_KIND_UNSPECIFIED)")
    try:
        return KIND_TO_DB[kind]
    except KeyError:
        raise InvalidArgument(field, f"unknown record kind {kind}") from None


def latency_variant(device: str, precision: str) -> str:
    """'cuda:1' + 'fp16' -> 'cuda-fp16'."""
    return f"{device.split(':', 1)[0]}-{precision}"


def to_payload(message: Message) -> str:
    """Protobuf JSON of a message without its store-assigned `ref`."""
    stored = type(message)()
    stored.CopyFrom(message)
    stored.ClearField("ref")
    return json_format.MessageToJson(stored, preserving_proto_field_name=True, indent=None, sort_keys=True)


def from_record(record: db.Record, message_type: type[Message]) -> Message:
    message = message_type()
    # Unknown fields are skipped so older code can read records written by newer code.
    json_format.Parse(record.payload, message, ignore_unknown_fields=True)
    message.ref.CopyFrom(ref_to_proto(record.ref))
    return message


class ProfileStoreServicer(pb_grpc.ProfileStoreServiceServicer):
    def __init__(self, store: db.Store, poll_interval_s: float = 0.15,
                 max_watch_streams: int = DEFAULT_MAX_WATCH_STREAMS):
        self._store = store
        self._poll_interval_s = poll_interval_s
        self.max_watch_streams = max_watch_streams
        self._watches = 0  # Watch streams open now (guarded by _cond)
        self._cond = threading.Condition()
        self._generation = 0  # bumped by every local write; Watch waits on it
        self._closing = False

    # -- plumbing ----------------------------------------------------------------------
    def close(self) -> None:
        """End every Watch stream (called when the server drains)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _put(self, model: str, kind: str, message: Message, variant: str = "") -> pb.VersionRef:
        ref = self._store.put(model, kind, to_payload(message), variant=variant)
        self._notify()
        log.info("stored %s %s v%d%s (seq %d)", kind, model, ref.version, f" [{ref.variant}]" if ref.variant else "",
                 ref.seq)
        return ref_to_proto(ref)

    def _manifest(self, model: str) -> pb.ModelManifest:
        if not model:
            raise InvalidArgument("model", "missing")
        check_length(model, "model")  # echoed in NOT_FOUND
        try:
            return from_record(self._store.get(model, db.MODEL), pb.ModelManifest)
        except NotFound:
            raise NotFound(f"model {model!r} is not registered; register its manifest first") from None

    def _get(self, request: pb.GetRequest, kind: str, message_type: type[Message]) -> Message:
        if not request.model:
            raise InvalidArgument("model", "missing")
        check_length(request.model, "model")
        check_length(request.variant, "variant")
        if request.version < 0:
            raise InvalidArgument("version", f"must be >= 0 (0 = latest), got {request.version}")
        record = self._store.get(request.model, kind, version=request.version, variant=request.variant)
        return from_record(record, message_type)

    # -- manifests ---------------------------------------------------------------------
    @grpc_errors
    def RegisterModel(self, request: pb.ModelManifest, context) -> pb.VersionRef:
        validate.validate_manifest(request)
        return self._put(request.name, db.MODEL, request)

    @grpc_errors
    def GetModel(self, request: pb.GetRequest, context) -> pb.ModelManifest:
        return self._get(request, db.MODEL, pb.ModelManifest)

    @grpc_errors
    def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[from_record(r, pb.ModelManifest) for r in self._store.list_models()])

    # -- profiles, matrices, tuning ----------------------------------------------------
    @grpc_errors
    def PutLatencyProfile(self, request: pb.LatencyProfile, context) -> pb.VersionRef:
        manifest = self._manifest(request.model)
        validate.validate_latency_profile(request, manifest)
        return self._put(request.model, db.LATENCY_PROFILE, request,
                         latency_variant(request.device, request.precision))

    @grpc_errors
    def GetLatencyProfile(self, request: pb.GetRequest, context) -> pb.LatencyProfile:
        return self._get(request, db.LATENCY_PROFILE, pb.LatencyProfile)

    @grpc_errors
    def PutAccuracyProfile(self, request: pb.AccuracyProfile, context) -> pb.VersionRef:
        manifest = self._manifest(request.model)
        validate.validate_accuracy_profile(request, manifest)
        return self._put(request.model, db.ACCURACY_PROFILE, request, request.precision)

    @grpc_errors
    def GetAccuracyProfile(self, request: pb.GetRequest, context) -> pb.AccuracyProfile:
        return self._get(request, db.ACCURACY_PROFILE, pb.AccuracyProfile)

    @grpc_errors
    def PutStrategyMatrix(self, request: pb.StrategyMatrix, context) -> pb.VersionRef:
        manifest = self._manifest(request.model)
        validate.validate_strategy_matrix(request, manifest)
        return self._put(request.model, db.STRATEGY_MATRIX, request, request.precision)

    @grpc_errors
    def GetStrategyMatrix(self, request: pb.GetRequest, context) -> pb.StrategyMatrix:
        return self._get(request, db.STRATEGY_MATRIX, pb.StrategyMatrix)

    @grpc_errors
    def PutTuning(self, request: pb.TuningRecord, context) -> pb.VersionRef:
        manifest = self._manifest(request.model)
        validate.validate_tuning(request, manifest)
        return self._put(request.model, db.TUNING, request)

    @grpc_errors
    def GetTuning(self, request: pb.GetRequest, context) -> pb.TuningRecord:
        return self._get(request, db.TUNING, pb.TuningRecord)

    # -- versions and events -----------------------------------------------------------
    @grpc_errors
    def ListVersions(self, request: pb.ListVersionsRequest, context) -> pb.ListVersionsResponse:
        if not request.model:
            raise InvalidArgument("model", "missing")
        kind = kind_from_proto(request.kind)
        # A listing, not a lookup: a model without records has no versions (not NOT_FOUND).
        return pb.ListVersionsResponse(versions=[ref_to_proto(r) for r in self._store.list_versions(request.model, kind)])

    @grpc_errors
    def Watch(self, request: pb.WatchRequest, context):
        models = list(request.models)
        for i, model in enumerate(models):
            if not model:
                raise InvalidArgument(f"models[{i}]", "empty model name")
            check_length(model, f"models[{i}]")
        kinds = [kind_from_proto(k, f"kinds[{i}]") for i, k in enumerate(request.kinds)]
        if request.after_seq < 0:
            raise InvalidArgument("after_seq", f"must be >= 0, got {request.after_seq}")
        with self._cond:
            if self._watches >= self.max_watch_streams:
                raise ResourceExhausted(f"{self._watches} Watch streams are open, the most this store serves at once "
                                        f"(--max-watch-streams); retry later")
            self._watches += 1
        try:
            yield from self._watch(request.after_seq, models, kinds, context)
        finally:
            with self._cond:
                self._watches -= 1

    def _watch(self, after_seq: int, models: list[str], kinds: list[str], context):
        seq = after_seq if after_seq > 0 else self._store.latest_seq()
        log.debug("watch from seq %d (models %s, kinds %s)", seq, models or "all", kinds or "all")
        # Tell the client at once that the watch is established and where it starts, so
        # a client can write right after watch() returns without racing the stream's start.
        context.send_initial_metadata(((WATCH_SEQ_METADATA, str(seq)),))
        ended = threading.Event()

        def on_end() -> None:  # the call was cancelled or finished: wake this stream now
            ended.set()
            with self._cond:
                self._cond.notify_all()

        context.add_callback(on_end)
        while context.is_active() and not ended.is_set():
            with self._cond:
                if self._closing:
                    return
                generation = self._generation
            # Every write with seq <= head is committed (writes are serialised), so the
            # scan below can advance to head without ever skipping a later commit.
            head = self._store.latest_seq()
            while seq < head and context.is_active():
                batch = self._store.events_after(seq, models, kinds, upto=head, limit=WATCH_BATCH)
                for ref in batch:
                    yield pb.VersionEvent(ref=ref_to_proto(ref))
                seq = batch[-1].seq if len(batch) == WATCH_BATCH else head
            with self._cond:
                self._cond.wait_for(lambda: self._closing or ended.is_set() or self._generation != generation,
                                    timeout=self._poll_interval_s)
