"""`mosel demo`: the main job. Bring the stack up (unless --target points at one), then
send the same open-loop traffic of paper-style jobs to a selection service per policy
(default: `agnostic`, the modality-agnostic baseline, and `mosel`) sharing one set of
encoders, and print the outcomes side by side."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mosel.client import MoselClient
from mosel.cli.up import SELECTION_FLAGS, add_stack_flags, stack_from_args
from mosel.sim.loadgen import paper_job_sizes, run_closed_loop, run_open_loop
from mosel.protocol.records import cost_from_latency_profile
from mosel.models.registry import get_pack
from mosel.scheduling.registry import POLICIES
from mosel.engine.settings import SelectionSettings
from mosel.launch.stack import StackError, bring_up
from mosel.store.client import ProfileStoreClient
from mosel.store.settings import DEFAULT_ADDRESS
from mosel.tables import format_table
from mosel.sim.workload import poisson


def register(sub) -> None:
    p = sub.add_parser("demo", help="bring the stack up, serve one workload per policy, print a table")
    # The large preset: on a CPU the default model's encoders cost less than a request's
    # gRPC round trip, which leaves modality selection little to save.
    add_stack_flags(p, default_size="large")
    p.add_argument("--policies", default="agnostic,mosel",
                   help=f"comma-separated policies to compare on the same traffic (from {sorted(POLICIES)})")
    p.add_argument("--target", default=None, metavar="HOST:PORT",
                   help="use this running selection service (one policy, whatever it runs) instead")
    p.add_argument("--store", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                   help="profile store of the --target stack (for the latency profile)")
    p.add_argument("--load", type=float, default=0.8,
                   help="offered load as a multiple of the capacity measured by a closed-loop probe (default 0.8)")
    p.add_argument("--duration-s", type=float, default=8.0, help="seconds of traffic per policy (default 8)")
    p.add_argument("--delta", type=float, default=0.06,
                   help="accuracy floors are uniform in [best - delta, best] (default 0.06)")
    p.add_argument("--slack-ms", type=float, default=40.0,
                   help="deadline = arrival + full-modality latency of the job size + slack (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="offline data directory (default $MOSEL_DATA_DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        print(f"mosel demo: unknown policies {unknown}; choose from {sorted(POLICIES)}")
        return 2
    if args.target:
        return _serve(args, {"target": args.target}, args.store)
    # the first policy's service is the stack's own; the others join it on the same encoders
    selection = replace(SelectionSettings.from_args(args, only=SELECTION_FLAGS), policy=policies[0])
    stack = stack_from_args(args, selection=selection)
    try:
        bring_up(stack, size=args.size)
        targets = {policies[0]: stack.endpoint("selection")}
        for policy in policies[1:]:
            print(f"      + selection service with policy {policy} on the same encoders ...")
            targets[policy] = stack.start_selection(f"selection_{policy}", policy)
    except StackError as exc:
        print(f"mosel demo: could not start the stack: {exc}")
        stack.stop()
        return 1
    try:
        return _serve(args, targets, stack.endpoint("profile_store"))
    finally:
        codes = stack.stop()
        print("stack stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))


def _full_latency_ms(store_address: str, model: str):
    """Profiled latency of a job of b requests with every modality (ms), from the store."""
    with ProfileStoreClient(store_address) as store:
        cost = cost_from_latency_profile(store.get_latency_profile(model))
    full = max(cost.configurations, key=lambda c: len(c.split("+")))
    return lambda b: float(cost.latency({full: min(b, cost.max_batch)}))


def _live_capacity(address: str, model: str, samples: list, seed: int) -> float:
    """Jobs/s of paper-sized jobs the first service sustains when never idle (closed loop,
    16 clients, generous deadlines): the load that full-modality serving can carry here."""
    sizes = paper_job_sizes(300, np.random.default_rng(seed + 1))
    with MoselClient(address) as client:
        probe = run_closed_loop(client, model, samples, sizes, concurrency=16, budget_ms=10_000.0,
                                desc="capacity probe")
    if not probe.requests_served:
        raise RuntimeError(f"capacity probe failed: {dict(probe.errors)}")
    return probe.jobs_sent / probe.wall_s


def _serve(args, targets: dict[str, str], store_address: str) -> int:
    pack = get_pack(args.model)
    samples = pack.test_samples(data_dir=args.data_dir, seed=args.seed)
    full_ms = _full_latency_ms(store_address, args.model)
    with MoselClient(next(iter(targets.values()))) as client:
        client.wait_ready(30.0)
        meta = client.metadata(args.model)
    best = max(c.accuracy for c in meta.configurations)
    capacity = _live_capacity(next(iter(targets.values())), args.model, samples, args.seed)
    rate = args.load * capacity
    workload = poisson(rate, args.duration_s, args.delta, best, args.seed, slack_ms=args.slack_ms)
    print(f"\nworkload: {len(workload.jobs)} jobs / {workload.requests} requests over {args.duration_s:.0f} s "
          f"(Poisson, {rate:.1f} jobs/s = {args.load:.1f}x the {capacity:.0f} jobs/s that full-modality serving "
          f"sustained in a closed-loop probe); floors in "
          f"[{best - args.delta:.3f}, {best:.3f}]; deadline = full latency + {args.slack_ms:.0f} ms")
    summaries = {}
    for policy, address in targets.items():
        with MoselClient(address) as client:
            client.wait_ready(30.0)
            result = run_open_loop(client.stub, args.model, samples, workload,
                                   lambda job: full_ms(job.size) + job.slack_ms, progress=True,
                                   desc=f"{policy:>9}", job_prefix=policy)
        summaries[meta.policy if policy == "target" else policy] = result.summary()
    print(format_table(["metric", *summaries], _rows(summaries), title="\nMOSEL demo: same traffic, per policy"))
    print("\nmiss = not answered within its deadline (late or refused); goodput = requests on time with "
          "their accuracy floor met. Accuracy is against the true labels of the test split.")
    return 0 if all(s["served_requests"] for s in summaries.values()) else 1


def _rows(summaries: dict[str, dict]) -> list[list]:
    def row(label, fn):
        return [label, *[fn(s) for s in summaries.values()]]

    return [
        row("jobs / requests sent", lambda s: f"{s['jobs']} / {s['requests']}"),
        row("requests served", lambda s: s["served_requests"]),
        row("throughput (req/s)", lambda s: round(s["throughput_rps"], 1)),
        row("goodput (req/s)", lambda s: round(s["goodput_rps"], 1)),
        row("deadline misses (jobs)", lambda s: f"{s['miss_rate']:.1%}"),
        row("refused / failed", lambda s: ", ".join(f"{k}={v}" for k, v in s["codes"].items() if k != "OK") or "-"),
        row("JCT mean (ms)", lambda s: round(s["mean_jct_ms"], 1)),
        row("JCT p99 (ms)", lambda s: round(s["p99_jct_ms"], 1)),
        row("accuracy vs true labels", lambda s: round(s["measured_accuracy"], 4)),
        row("expected accuracy", lambda s: round(s["expected_accuracy"], 4)),
        row("jobs below their floor", lambda s: s["floor_violations"]),
        row("degraded jobs", lambda s: s["degraded_jobs"]),
        row("configurations used", lambda s: ", ".join(f"{k}={v}" for k, v in sorted(s["configurations"].items()))),
    ]
