"""Run the selection service: admission, scheduling, batching, fusion."""

from __future__ import annotations

import logging
import sys
import time

from mosel.ops import extension as ext
from mosel.errors import Unavailable
from mosel.repository.source import MODEL_ERRORS, find_digest
from mosel.engine.dispatcher import Dispatcher
from mosel.engine.encoder_pool import EncoderPool, parse_encoder_flags
from mosel.engine.served_model import ServedModel
from mosel.engine.profile_sync import ProfileSync
from mosel.engine.servicer import SelectionServicer
from mosel.engine.settings import SelectionSettings
from mosel.engine.stats import ServingStats, export_gauges
from mosel.frontends.kserve_grpc import SERVICE_NAME as KSERVE_SERVICE, KServeServicer, add_to_server as add_kserve
from mosel.frontends.kserve_http import start_http
from mosel.metrics.endpoint import serve_metrics
from mosel.metrics.families import SelectionMetrics
from mosel.metrics.interceptor import interceptors_for
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server
from mosel.store.client import ProfileStoreClient
from mosel.protocol.v1 import selection_pb2_grpc

log = logging.getLogger("services.selection")


def _load_models(settings, names: list[str]) -> dict[str, ServedModel]:
    """The models that load; a broken one is logged and left out, so it stops no other."""
    pinned = settings.pinned_versions()
    models = {}
    for name in names:
        try:
            opened = settings.open_model(name, pinned.get(name))
            models[name] = ServedModel.load(name, opened=opened)
            log.info("model %s from %s", name, opened.where)
        except (*MODEL_ERRORS, KeyError) as exc:
            log.error("model %s is not served: %s", name, exc)
    return models


def main(argv: list[str] | None = None) -> int:
    settings = SelectionSettings.parse(argv)
    settings.setup_logging("selection")
    settings.apply_threads()

    store = ProfileStoreClient(settings.profile_store)
    try:
        store.wait_ready(settings.wait_s)
        names = list(settings.models) or [m.name for m in store.list_models()]
        if not names:
            log.error("the profile store at %s holds no model; run `mosel demo` or register one",
                      settings.profile_store)
            return 2
        models = _load_models(settings, names)
        if not models:
            log.error("none of the models %s can be served (see the errors above)", names)
            return 2
        encoder_flags = parse_encoder_flags(list(settings.encoders), default_model=names[0])
        pools = {}
        for name, model in list(models.items()):
            addresses = encoder_flags.get(name, {})
            missing = set(model.pack.modality_names) - set(addresses)
            if missing:
                log.error("model %s is not served: no --encoder given for %s", name, sorted(missing))
                del models[name]
                continue
            pools[name] = EncoderPool(name, addresses, settings.max_message_bytes)
            pools[name].wait_serving(settings.wait_s)
        if not models:
            log.error("no model has all its encoders")
            return 2
    except (*MODEL_ERRORS, Unavailable, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    ext.load_ops()
    pinned = settings.pinned_versions()
    # a pinned model keeps its version; the others follow the store's manifest to new weights
    find = lambda name, digest: None if name in pinned else find_digest(  # noqa: E731
        name, digest, home=settings.home, repository=settings.model_repository)
    sync = ProfileSync(store, models, find=find)
    sync.load_all()
    sync.start()
    metrics = SelectionMetrics() if settings.metrics_port >= 0 else None
    dispatchers = {
        name: Dispatcher(model, pools[name], settings.build_policy(), ServingStats(model=name, metrics=metrics),
                         max_round_items=settings.max_round, max_queue_items=settings.max_queue,
                         max_wait_s=settings.batch_wait_ms / 1000.0, pipeline_depth=settings.pipeline_depth)
        for name, model in models.items()
    }
    servicer = SelectionServicer(dispatchers, settings.policy, default_budget_ms=settings.default_budget_ms,
                                 max_job_size=settings.max_job_size)
    if metrics is not None:
        for name, d in dispatchers.items():
            export_gauges(metrics, name, d.queue_depth, lambda d=d: d.policy.planning_headroom_s(time.monotonic()))
    kserve = KServeServicer(servicer)  # the Open Inference Protocol, in process: no extra hop
    running = start_server(
        [Registration(servicer, selection_pb2_grpc.add_SelectionServiceServicer_to_server, "mosel.v1.SelectionService"),
         Registration(kserve, add_kserve, KSERVE_SERVICE)],
        host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes,
        interceptors=interceptors_for(metrics),
        # Handlers block until their job is answered: one thread per call in flight, so the
        # scheduler sees every waiting job rather than gRPC queueing calls out of its sight.
        max_workers=settings.max_inflight, max_concurrent_rpcs=settings.max_inflight,
    )
    running.on_drain.append(lambda: kserve.set_ready(False))
    http = start_http(kserve.core, host=settings.host, port=settings.http_port) if settings.http_port >= 0 else None
    endpoint = serve_metrics(metrics, settings.host, settings.metrics_port)
    install_signal_handlers(running, settings.grace_s)
    running.set_serving(True)
    draining = []
    running.on_drain.append(lambda: (draining.append(True), running.set_serving(False)))

    def follow_encoders() -> None:
        # NOT_SERVING only when no model has a configuration left to serve
        if not draining:
            running.set_serving(any(pool.down_modalities() != pool.modalities() for pool in pools.values()))

    for pool in pools.values():
        pool.on_change.append(follow_encoders)
        pool.start_probing()
    log.info("serving %s on %s:%d with policy %s", sorted(models), settings.host, running.port, settings.policy)
    write_ready_file(settings.ready_file, running.port)
    running.wait()
    if http is not None:
        http.stop(settings.grace_s)
    if endpoint is not None:
        endpoint.stop()
    sync.stop()
    for d in dispatchers.values():
        d.stop()
    for p in pools.values():
        p.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
