"""Run one modality encoder as its own gRPC service."""

from __future__ import annotations

import logging
import sys

from mosel.ops import extension as ext
from mosel.encoder.runner import PRECISIONS, EncoderRunner
from mosel.encoder.servicer import EncoderServicer
from mosel.models.checkpoint import CheckpointError
from mosel.server.flags import apply_threads, common_parser, setup_logging
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server
from mosel.protocol.v1 import encoder_pb2_grpc

log = logging.getLogger("services.encoder")


def main(argv: list[str] | None = None) -> int:
    parser = common_parser("MOSEL encoder service: one modality encoder of one model.", default_port=50061,
                           store_client=False)
    parser.add_argument("--model", default="av-digits", help="model name (default av-digits)")
    parser.add_argument("--modality", required=True, help="modality to encode, e.g. audio")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS), help="compute precision (default fp32)")
    parser.add_argument("--max-batch", type=int, default=32, help="largest batch accepted (default 32)")
    parser.add_argument("--home", default=None, help="state directory holding checkpoints (default $MOSEL_HOME)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, f"encoder[{args.modality}]")
    apply_threads(args.threads)

    try:
        runner = EncoderRunner(args.model, args.modality, device=args.device, precision=args.precision,
                               max_batch=args.max_batch, home=args.home)
    except (CheckpointError, KeyError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    fused = ext.load_ops()
    servicer = EncoderServicer(runner, fused_ops=fused)
    running = start_server(
        [Registration(servicer, encoder_pb2_grpc.add_EncoderServiceServicer_to_server, "mosel.v1.EncoderService")],
        host=args.host, port=args.port, max_message_bytes=args.max_message_mb * 1024 * 1024,
    )
    running.on_drain.append(lambda: setattr(servicer, "draining", True))
    install_signal_handlers(running, args.grace_s)
    runner.warm_up()
    running.set_serving(True)
    log.info("serving %s/%s on %s:%d (device %s, %s, fused ops %s)", args.model, args.modality, args.host,
             running.port, args.device, args.precision, "on" if fused else "off")
    write_ready_file(args.ready_file, running.port)
    running.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
