"""`mosel bench scheduler`: the online scheduler's decision latency and a side-by-side
simulator run of the policies on the paper profile.

(1) Decision latency of `MoselPolicy.plan` on the paper's strategy matrix
(mosel.models.tvlt.paper_facts.joint_cost + solve_matrix) with N queued jobs (paper job sizes and floors).
Two queues per N: "no miss" (loose deadlines: predict once, all full accuracy) and
"reassign" (deadlines between the all-cheapest and the all-full predicted finish, so
the reassignment runs every call). "cold" is the first call (per-job options built),
"warm" the following calls (options cached, as in the dispatcher's loop, where each job
is planned in many rounds). "p99 cpu" is the thread CPU time per call, which separates the
scheduler's own work from preemption on a shared machine.

(2) The simulator (mosel.sim.simulator) runs agnostic / aggressive / mosel on the same
Poisson workloads (paper workload: size max(1, int(Normal(1, 6))), floor uniform in
[best - 0.03, best], deadline = arrival + full-modality latency of the job size + 17 ms),
with rounds of up to 32 requests and 5 % log-normal noise on round latencies. "miss" =
jobs not finished by their deadline (late, expired, dropped or refused) / jobs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mosel.sim import simulator as S
from mosel.scheduling.mosel_policy import MoselPolicy
from mosel.scheduling.registry import make_policy


def register(sub) -> None:
    parser = sub.add_parser("scheduler", help="online scheduler: decision latency and simulated policies")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 256], help="queue lengths (default 8 64 256)")
    parser.add_argument("--repeats", type=int, default=200, help="warm plan calls per queue (default 200)")
    parser.add_argument("--rates", type=float, nargs="+", default=[2, 5, 10, 15, 20, 30, 40, 60, 80, 120],
                        help="job arrival rates per second for the simulator")
    parser.add_argument("--duration", type=float, default=30.0, help="virtual seconds per simulator run")
    parser.add_argument("--noise", type=float, default=0.05, help="log-normal sigma on round latencies")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def _queue(model, n: int, seed: int, mode: str):
    specs = S.paper_workload(model, 1000.0, 10.0, seed=seed)[:n]
    jobs = [S.make_job(model, s, i) for i, s in enumerate(specs)]
    pol = MoselPolicy()
    pol._ready(model)
    p = pol.predictor
    sizes = [j.size for j in jobs]
    opts = [pol.options(j) for j in jobs]
    full = p.finish_times(sizes, [p.split_of(o[-1].payload) for o in opts], 0.0)
    cheap = p.finish_times(sizes, [p.split_of(o[0].payload) for o in opts], 0.0)
    for j, f, c in zip(jobs, full, cheap):
        j.received = 0.0
        j.deadline = 2.0 * f + 0.01 if mode == "no miss" else c + 0.6 * (f - c) + 1e-4
    return jobs


def _pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100.0 * len(s)))]


def decision_latency(model, sizes, repeats, seed):
    rows = []
    for n in sizes:
        for mode in ("no miss", "reassign"):
            jobs = _queue(model, n, seed, mode)
            pol = MoselPolicy()
            t = time.perf_counter()
            pol.plan(jobs, 0.0)
            cold = time.perf_counter() - t
            reps = max(20, repeats if n <= 64 else repeats // 4)
            times, cpu, exact = [], [], 0
            for _ in range(reps):
                c = time.thread_time()
                t = time.perf_counter()
                pol.plan(jobs, 0.0)
                times.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
                exact += pol.last_exact
            degraded = sum(1 for j in jobs for it in j.items if it.configuration != "audio+video")
            rows.append((n, mode, cold * 1e3, statistics.median(times) * 1e3, _pct(times, 99) * 1e3,
                         _pct(cpu, 99) * 1e3, exact / reps if mode == "reassign" else float("nan"), len(pol.drops), degraded))
    return rows


def run(args: argparse.Namespace) -> int:
    model = S.paper_model()
    print("== (1) MoselPolicy.plan decision latency (paper matrix, TVLT stand-in profile) ==")
    print("(p99 cpu: 99th percentile of the calling thread's CPU time per call; a p99 far above it is")
    print(" time the process spent preempted, not scheduler work)")
    print(f"{'jobs':>5} {'queue':>9} {'cold ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 cpu':>8} {'exact':>6} {'drops':>6} {'degraded req':>12}")
    for n, mode, cold, p50, p99, p99c, ex, drops, deg in decision_latency(model, args.sizes, args.repeats, args.seed):
        ex_s = "-" if ex != ex else f"{ex:.0%}"
        print(f"{n:>5} {mode:>9} {cold:>8.3f} {p50:>8.3f} {p99:>8.3f} {p99c:>8.3f} {ex_s:>6} {drops:>6} {deg:>12}")

    print()
    print("== (2) simulator: paper workload, rounds <= 32 requests, "
          f"{args.duration:.0f} virtual s per run, noise sigma {args.noise} ==")
    policies = ("agnostic", "aggressive", "mosel")
    best_at_1pct = {p: None for p in policies}
    header = (f"{'jobs/s':>7} {'req/s':>6} {'policy':>10} {'miss':>6} {'late':>5} {'exp':>5} {'drop':>5} {'refus':>5} "
              f"{'goodput':>8} {'thrput':>7} {'JCT ms':>7} {'p99 ms':>7} {'acc':>7} {'floor!':>6} {'run s':>5}")
    print(header)
    for rate in args.rates:
        specs = S.paper_workload(model, rate, args.duration, seed=args.seed)
        offered = sum(s.size for s in specs) / args.duration
        for name in policies:
            t = time.perf_counter()
            res = S.simulate(specs, make_policy(name), model, noise=args.noise, seed=args.seed)
            el = time.perf_counter() - t
            s = res.summary
            c = s.counts
            print(f"{rate:>7.0f} {offered:>6.0f} {name:>10} {s.miss_rate:>6.1%} {c['late']:>5} {c['expired']:>5} "
                  f"{c['dropped']:>5} {c['refused']:>5} {s.goodput_rps:>8.1f} {s.throughput_rps:>7.1f} "
                  f"{s.mean_jct_ms:>7.1f} {s.p99_jct_ms:>7.1f} {s.mean_accuracy:>7.4f} {s.floor_violations:>6} {el:>5.1f}")
            if s.miss_rate <= 0.01:
                prev = best_at_1pct[name]
                if prev is None or s.goodput_rps > prev[1]:
                    best_at_1pct[name] = (rate, s.goodput_rps, s.mean_accuracy)
    print()
    print("highest goodput (req/s finished in time, floor met) among runs with <= 1% misses:")
    for name in policies:
        v = best_at_1pct[name]
        print(f"  {name:>10}: " + ("no tested rate reached <= 1% misses" if v is None
                                  else f"{v[1]:.1f} req/s at {v[0]:.0f} jobs/s, accuracy {v[2]:.4f}"))
    return 0
