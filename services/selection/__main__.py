"""Run the selection service: admission, scheduling, batching, fusion."""

from __future__ import annotations

import logging
import sys

from mosel.ops import extension as ext
from mosel.errors import Unavailable
from mosel.models.checkpoint import CheckpointError
from mosel.engine.dispatcher import Dispatcher
from mosel.engine.encoder_pool import EncoderPool, parse_encoder_flags
from mosel.engine.served_model import ServedModel
from mosel.scheduling.headroom import DEFAULT_HEADROOM_STEP_S, DEFAULT_MISS_TARGET
from mosel.scheduling.profiled import DEFAULT_REPLY_MARGIN_S
from mosel.scheduling.predict import DEFAULT_PIPELINE_DEPTH
from mosel.scheduling.registry import POLICIES, make_policy
from mosel.engine.profile_sync import ProfileSync
from mosel.engine.servicer import SelectionServicer
from mosel.engine.stats import ServingStats
from mosel.server.flags import apply_threads, common_parser, setup_logging
from mosel.server.readiness import write_ready_file
from mosel.server.serve import Registration, install_signal_handlers, start_server
from mosel.store.client import ProfileStoreClient
from mosel.protocol.v1 import selection_pb2_grpc

log = logging.getLogger("services.selection")


def main(argv: list[str] | None = None) -> int:
    parser = common_parser("MOSEL selection service: per-request modality selection, EDF scheduling, fusion.",
                           default_port=50050)
    parser.add_argument("--model", action="append", default=None,
                        help="model to serve (repeatable; default: every model in the profile store)")
    parser.add_argument("--encoder", action="append", default=[], metavar="[MODEL/]MODALITY=HOST:PORT[,HOST:PORT]",
                        help="encoder replicas for a modality (repeatable)")
    parser.add_argument("--policy", default="agnostic", choices=sorted(POLICIES), help="scheduling policy")
    parser.add_argument("--default-budget-ms", type=float, default=1000.0,
                        help="deadline budget for requests that set none (default 1000)")
    parser.add_argument("--max-job-size", type=int, default=32, help="largest job accepted (default 32)")
    parser.add_argument("--max-round", type=int, default=32, help="most requests per encoder batch (default 32)")
    parser.add_argument("--pipeline-depth", type=int, default=DEFAULT_PIPELINE_DEPTH,
                        help="rounds in flight at once: the next round's encoder batches queue behind this "
                             f"round's on each encoder and overlap its fusion (default {DEFAULT_PIPELINE_DEPTH}; "
                             "1 = strict rounds)")
    parser.add_argument("--reply-margin-ms", type=float, default=DEFAULT_REPLY_MARGIN_S * 1000.0,
                        help="mosel policy: plan to finish this long before each deadline, for the answer's "
                             f"way back to the client (default {DEFAULT_REPLY_MARGIN_S * 1000.0:g})")
    parser.add_argument("--miss-target", type=float, default=DEFAULT_MISS_TARGET,
                        help="mosel policy: fraction of jobs allowed to miss their deadline; while more miss, plans "
                             f"keep more time in hand and degrade earlier (default {DEFAULT_MISS_TARGET:g})")
    parser.add_argument("--headroom-step-ms", type=float, default=DEFAULT_HEADROOM_STEP_S * 1000.0,
                        help="mosel policy: time in hand one missed job adds to the plans "
                             f"(default {DEFAULT_HEADROOM_STEP_S * 1000.0:g}; 0 turns the miss feedback off)")
    parser.add_argument("--max-queue", type=int, default=4096, help="queued requests before RESOURCE_EXHAUSTED")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0,
                        help="let a part-filled batch wait this long for more requests (default 0: send at once)")
    parser.add_argument("--max-inflight", type=int, default=1024,
                        help="calls in flight at once; more are refused with RESOURCE_EXHAUSTED (default 1024)")
    parser.add_argument("--home", default=None, help="state directory holding checkpoints (default $MOSEL_HOME)")
    parser.add_argument("--wait-s", type=float, default=60.0, help="how long to wait for the store and encoders")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "selection")
    apply_threads(args.threads)
    if args.pipeline_depth < 1:
        parser.error("--pipeline-depth must be at least 1")
    if args.reply_margin_ms < 0:
        parser.error("--reply-margin-ms must not be negative")
    if not 0.0 < args.miss_target < 1.0:
        parser.error("--miss-target must be between 0 and 1 (exclusive)")
    if args.headroom_step_ms < 0:
        parser.error("--headroom-step-ms must not be negative")
    if args.max_job_size > args.max_round:
        parser.error("--max-job-size must not exceed --max-round (a job is never split across rounds)")

    store = ProfileStoreClient(args.profile_store)
    try:
        store.wait_ready(args.wait_s)
        names = args.model or [m.name for m in store.list_models()]
        if not names:
            log.error("the profile store at %s holds no model; run `mosel demo` or register one", args.profile_store)
            return 2
        models = {name: ServedModel.load(name, home=args.home) for name in names}
        encoder_flags = parse_encoder_flags(args.encoder, default_model=names[0])
        pools = {}
        for name, model in models.items():
            addresses = encoder_flags.get(name, {})
            missing = set(model.pack.modality_names) - set(addresses)
            if missing:
                log.error("model %s: no --encoder given for %s", name, sorted(missing))
                return 2
            pools[name] = EncoderPool(name, addresses, args.max_message_mb * 1024 * 1024)
            pools[name].wait_serving(args.wait_s)
    except (CheckpointError, Unavailable, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2

    ext.load_ops()
    sync = ProfileSync(store, models)
    sync.load_all()
    sync.start()
    # Predicting policies must form rounds exactly as the dispatcher does.
    policy_options = {} if args.policy == "agnostic" else {"max_round_items": args.max_round}
    if args.policy == "mosel":
        policy_options.update(reply_margin_s=args.reply_margin_ms / 1000.0, miss_target=args.miss_target,
                              headroom_step_s=args.headroom_step_ms / 1000.0)
    dispatchers = {
        name: Dispatcher(model, pools[name], make_policy(args.policy, **policy_options), ServingStats(),
                         max_round_items=args.max_round, max_queue_items=args.max_queue,
                         max_wait_s=args.batch_wait_ms / 1000.0, pipeline_depth=args.pipeline_depth)
        for name, model in models.items()
    }
    servicer = SelectionServicer(dispatchers, args.policy, default_budget_ms=args.default_budget_ms,
                                 max_job_size=args.max_job_size)
    running = start_server(
        [Registration(servicer, selection_pb2_grpc.add_SelectionServiceServicer_to_server, "mosel.v1.SelectionService")],
        host=args.host, port=args.port, max_message_bytes=args.max_message_mb * 1024 * 1024,
        # Handlers block until their job is answered: one thread per call in flight, so the
        # scheduler sees every waiting job rather than gRPC queueing calls out of its sight.
        max_workers=args.max_inflight, max_concurrent_rpcs=args.max_inflight,
    )
    install_signal_handlers(running, args.grace_s)
    running.set_serving(True)
    log.info("serving %s on %s:%d with policy %s", sorted(models), args.host, running.port, args.policy)
    write_ready_file(args.ready_file, running.port)
    running.wait()
    sync.stop()
    for d in dispatchers.values():
        d.stop()
    for p in pools.values():
        p.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
