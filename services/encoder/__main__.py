"""Run one modality encoder as its own gRPC service."""

from __future__ import annotations

import logging
import sys

from mosel.ops import extension as ext
from mosel.encoder.runner import EncoderRunner
from mosel.encoder.servicer import EncoderServicer
from mosel.encoder.versions import EncoderVersions
from mosel.metrics.endpoint import serve_metrics
from mosel.metrics.families import EncoderMetrics
from mosel.metrics.interceptor import interceptors_for
from mosel.encoder.settings import EncoderSettings
from mosel.repository.source import MODEL_ERRORS, find_digest
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server
from mosel.protocol.v1 import encoder_pb2_grpc

log = logging.getLogger("services.encoder")


def _finder(settings: EncoderSettings):
    """Find other weights of the model when the selection service asks for them (not when a
    version is pinned: then the encoder serves that one only)."""
    return lambda digest: find_digest(settings.model, digest, home=settings.home, repository=settings.model_repository)


def main(argv: list[str] | None = None) -> int:
    settings = EncoderSettings.parse(argv)
    settings.setup_logging(f"encoder[{settings.modality}]")
    settings.apply_threads()

    try:
        opened = settings.open_model(settings.model, settings.model_version or None)
        runner = EncoderRunner(settings.model, settings.modality, device=settings.device, opened=opened,
                               precision=settings.precision, max_batch=settings.max_batch)
    except (*MODEL_ERRORS, KeyError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    fused = ext.load_ops()
    metrics = EncoderMetrics() if settings.metrics_port >= 0 else None
    versions = EncoderVersions(runner, find=None if settings.model_version else _finder(settings),
                               build=lambda opened: EncoderRunner(settings.model, settings.modality, opened=opened,
                                                                  device=settings.device, precision=settings.precision,
                                                                  max_batch=settings.max_batch))
    servicer = EncoderServicer(versions, fused_ops=fused, metrics=metrics)
    running = start_server(
        [Registration(servicer, encoder_pb2_grpc.add_EncoderServiceServicer_to_server, "mosel.v1.EncoderService")],
        host=settings.host, port=settings.port, max_message_bytes=settings.max_message_bytes,
        interceptors=interceptors_for(metrics),
    )
    endpoint = serve_metrics(metrics, settings.host, settings.metrics_port)
    running.on_drain.append(lambda: setattr(servicer, "draining", True))
    install_signal_handlers(running, settings.grace_s)
    runner.warm_up()
    running.set_serving(True)
    log.info("serving %s/%s from %s on %s:%d (device %s, %s, fused ops %s)", settings.model, settings.modality,
             opened.where, settings.host, running.port, settings.device, settings.precision, "on" if fused else "off")
    write_ready_file(settings.ready_file, running.port)
    running.wait()
    if endpoint is not None:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
