"""`mosel demo`: the main job. Bring the stack up (unless --target points at one), send a
real workload of paper-sized jobs through the Python client, print what happened."""

from __future__ import annotations

import numpy as np

from mosel.client import MoselClient
from mosel.commands.up import add_stack_flags
from mosel.config import mosel_home
from mosel.loadgen import paper_job_sizes, run_closed_loop
from mosel.packs import get_pack
from mosel.stack import Stack, StackError, bring_up
from mosel.tables import format_table


def register(sub) -> None:
    p = sub.add_parser("demo", help="bring the stack up, serve a real workload, print a table")
    add_stack_flags(p)
    p.add_argument("--target", default=None, metavar="HOST:PORT", help="use a running selection service instead")
    p.add_argument("--jobs", type=int, default=120, help="jobs to send (default 120)")
    p.add_argument("--concurrency", type=int, default=4, help="clients in flight at once (default 4)")
    p.add_argument("--budget-ms", type=float, default=2000.0, help="deadline budget per job (default 2000)")
    p.add_argument("--min-accuracy", type=float, default=0.0, help="accuracy floor per job (default none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="offline data directory (default $MOSEL_DATA_DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    stack = None
    target = args.target
    if target is None:
        stack = Stack(home=mosel_home(), model=args.model, policy=args.policy, device=args.device)
        try:
            bring_up(stack, size=args.size)
        except StackError as exc:
            print(f"mosel demo: could not start the stack: {exc}")
            return 1
        target = stack.endpoint("selection")
    try:
        return _serve_workload(args, target)
    finally:
        if stack is not None:
            codes = stack.stop()
            print("stack stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))


def _serve_workload(args, target: str) -> int:
    pack = get_pack(args.model)
    samples = pack.test_samples(data_dir=args.data_dir, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    sizes = paper_job_sizes(args.jobs, rng)
    with MoselClient(target) as client:
        client.wait_ready(30.0)
        meta = client.metadata(args.model)
        print(f"serving {meta.name} at {target}: policy {meta.policy}, modalities "
              f"{', '.join(m.name for m in meta.modalities)}; {len(sizes)} jobs / {sum(sizes)} requests, "
              f"{args.concurrency} clients")
        result = run_closed_loop(client, args.model, samples, sizes, concurrency=args.concurrency,
                                 budget_ms=args.budget_ms, min_accuracy=args.min_accuracy)
        stats = client.stats(args.model)
    rows = [
        ["policy", meta.policy],
        ["jobs / requests sent", f"{result.jobs_sent} / {result.requests_sent}"],
        ["requests served", result.requests_served],
        ["errors", ", ".join(f"{k}={v}" for k, v in result.errors.items()) or "none"],
        ["throughput (req/s)", round(result.throughput_rps, 1)],
        ["job latency p50 (ms)", round(result.percentile_ms(50), 1)],
        ["job latency p99 (ms)", round(result.percentile_ms(99), 1)],
        ["accuracy vs true labels", round(result.accuracy, 4)],
        ["mean expected accuracy", round(result.mean_expected_accuracy, 4)],
        ["degraded requests", result.degraded],
        ["configurations used", ", ".join(f"{k}={v}" for k, v in sorted(result.configurations.items()))],
        ["server deadline misses", stats.deadline_misses],
    ]
    print(format_table(["metric", "value"], rows, title="\nMOSEL demo"))
    return 0 if result.requests_served else 1
