"""Parts (2) and (3) of `mosel bench paper`: the live AV-Digits runs over gRPC (one stack, a
selection service per policy, the open-loop generator at rising rates), the calibration of
the simulator from what each service measures, and the replay of a live trace in the
simulator, uncalibrated and calibrated."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from mosel.bench.paper.measures import (CALIBRATION_SEED_OFFSET, LIVE_FACTORS, POLICIES, QUICK_LIVE_FACTORS,
                                        REPLAY_TOLERANCE, agnostic_capacity, finite, max_sustained, ratio)
from mosel.bench.paper.report import fmt
from mosel.sim import workload as W

def live_sustained(runs: list[dict]) -> dict | None:
    """The live run with the highest goodput among those with <= MISS_TARGET misses and no
    floor violation (resolution: the rate grid), as reported."""
    best = max_sustained(runs)
    if best is None:
        return None
    return {k: best[k] for k in ("rate_factor", "offered_rps", "goodput_rps", "miss_rate", "mean_jct_ms", "p99_jct_ms",
                                 "measured_accuracy", "expected_accuracy")}



def calibrate_from_service(client, model, samples, workload, budget_ms_of) -> dict:
    """Run a calibration trace against the selection service behind `client`, then read
    what the service measured: the cost of each encoder lane and of the finishing step
    (GetStats, fitted over its recent batches) and its pipeline depth; the client's share of
    a job (transit) is the median of client JCT minus the service's own time per job."""
    from mosel.sim.loadgen import run_open_loop

    r = run_open_loop(client.stub, model.name, samples, workload, budget_ms_of, progress=False, job_prefix="cal")
    stats = client.stats(model.name)
    if not stats.lanes or not stats.finishing.samples:
        raise RuntimeError(f"the service reports no measured lane costs (codes {r.summary()['codes']})")
    lanes = [{"name": lane.name, "overhead_ms": lane.overhead_ms, "scale": lane.scale, "noise": lane.noise,
              "samples": lane.samples} for lane in stats.lanes]
    f = stats.finishing
    finishing = {"name": f.name, "overhead_ms": f.overhead_ms, "scale": f.scale, "noise": f.noise, "samples": f.samples}
    gaps = [j.latency_ms - j.server_ms for j in r.jobs if j.ok and j.server_ms == j.server_ms]
    transit_ms = statistics.median(gaps) if gaps else 0.0
    return {"lanes": lanes, "finishing": finishing, "pipeline_depth": stats.pipeline_depth,
            "transit_ms": max(0.0, transit_ms), "jobs": len(r.jobs), "summary": r.summary()}


def step_cost(fit: dict):
    """A measured cost as reported (calibrate_from_service) -> the simulator's StepCost."""
    from mosel.sim.simulator import StepCost

    return StepCost(fit["overhead_ms"] * 1e-3, fit["scale"], fit["noise"])


def replay_compare(live_summary: dict, sim_summary) -> dict:
    """Agreement of one live run and its simulated replay (REPLAY_TOLERANCE)."""
    sim_on_time = sim_summary.counts["served"] / max(1, sim_summary.jobs)
    live_on_time = live_summary["on_time_jobs"] / max(1, live_summary["jobs"])
    jct_ratio = ratio(live_summary["mean_jct_ms"], sim_summary.mean_jct_ms)
    agree = (abs(sim_on_time - live_on_time) <= REPLAY_TOLERANCE["served_fraction_abs"]
             and jct_ratio is not None
             and 1 / REPLAY_TOLERANCE["mean_jct_ratio"] <= jct_ratio <= REPLAY_TOLERANCE["mean_jct_ratio"])
    return {"sim_on_time_fraction": sim_on_time, "live_on_time_fraction": live_on_time,
            "sim_mean_jct_ms": finite(sim_summary.mean_jct_ms), "live_mean_jct_ms": live_summary["mean_jct_ms"],
            "jct_ratio_live_over_sim": jct_ratio, "sim_p99_jct_ms": finite(sim_summary.p99_jct_ms),
            "live_p99_jct_ms": live_summary["p99_jct_ms"],
            "p99_ratio_live_over_sim": ratio(live_summary["p99_jct_ms"], sim_summary.p99_jct_ms),
            "sim_accuracy": finite(sim_summary.mean_accuracy), "within_tolerance": agree}


def live_model(store_address: str, model_name: str):
    """SimModel of the live model from the stack's store: measured latency profile, accuracy
    profile, strategy matrix."""
    from mosel.protocol.records import accuracies_from_profile, cost_from_latency_profile, matrix_from_proto
    from mosel.sim.simulator import SimModel
    from mosel.store.client import ProfileStoreClient

    client = ProfileStoreClient(store_address)
    try:
        manifest = client.get_model(model_name)
        latency = client.get_latency_profile(model_name, variant="cpu-fp32")
        acc = accuracies_from_profile(client.get_accuracy_profile(model_name, variant="fp32"))
        matrix = matrix_from_proto(client.get_strategy_matrix(model_name))
        cost = cost_from_latency_profile(latency, modalities=[m.name for m in manifest.modalities])
        info = {"latency_profile_version": latency.ref.version, "cost_model": latency.cost_model,
                "placement": getattr(cost, "placement", ""), "matrix_version": matrix.source.get("version"),
                "tables_ms": {s.unit: list(s.median_ms) for s in latency.series},
                "head_ms": list(latency.head_ms)}
    finally:
        client.close()
    acc = {c: acc[c] for c in cost.configurations if c in acc}
    return SimModel(model_name, cost, matrix, acc), info


def run_live(args, out: Path, quick: bool, say=print) -> dict:
    from mosel.client import MoselClient
    from mosel.config import mosel_home
    from mosel.sim.loadgen import run_open_loop
    from mosel.models.registry import get_pack
    from mosel.scheduling.registry import make_policy
    from mosel.sim.simulator import simulate
    from mosel.engine.settings import SelectionSettings
    from mosel.launch.stack import Stack, bring_up

    size = args.live_size or ("tiny" if quick else "large")
    # one home per size: a home keeps the checkpoint it trained first
    home = Path(args.live_home) if args.live_home else mosel_home() / f"bench-paper-live-{size}"
    home.mkdir(parents=True, exist_ok=True)
    seconds = args.live_seconds or (2.0 if quick else 6.0)
    factors = tuple(args.live_factors or (QUICK_LIVE_FACTORS if quick else LIVE_FACTORS))
    stack = Stack(home=home, model="av-digits", selection=SelectionSettings(policy=POLICIES[0]))
    t_up = time.perf_counter()
    bring_up(stack, size=size, progress=False, say=lambda m: say("      " + m))
    live: dict = {"home": str(home), "size": size, "seconds_per_run": seconds, "slack_ms": args.live_slack_ms,
                  "delta": args.live_delta, "rate_factors": list(factors), "runs": {p: [] for p in POLICIES},
                  "replay": {}, "replay_tolerance": REPLAY_TOLERANCE, "calibration": {}}
    try:
        model, info = live_model(stack.endpoint("profile_store"), stack.model)
        live["bring_up_s"] = time.perf_counter() - t_up
        live["profile"] = info
        live["accuracies"] = {c: model.accuracy_of(c) for c in model.configurations}
        best = max(model.accuracy_of(c) for c in model.configurations)
        live["profile_capacity_jobs_s"] = agnostic_capacity(model)
        live["best_accuracy"] = best
        samples = get_pack("av-digits").test_samples(limit=256)
        # The profile's capacity counts encoder compute only; the stack's real capacity (gRPC,
        # serialisation, Python dispatch, 5 processes on this machine's cores) is far lower, so
        # live rates are multiples of a *measured* agnostic capacity: a closed-loop run
        # (8 clients, paper job sizes) against the agnostic selection service.
        import numpy as np

        from mosel.sim.loadgen import paper_job_sizes, run_closed_loop
        n_cap = args.capacity_jobs or (80 if quick else 300)
        cap_client = MoselClient(stack.endpoint("selection"))
        cap_client.wait_ready(60.0)
        run_closed_loop(cap_client, stack.model, samples, [1] * 8, concurrency=4, progress=False)  # warm-up
        sizes = paper_job_sizes(n_cap, np.random.default_rng(args.seed))
        closed = run_closed_loop(cap_client, stack.model, samples, sizes, concurrency=8, budget_ms=10000.0,
                                 progress=False)
        cap_client.close()
        cap = len(closed.latencies_ms) / closed.wall_s
        live["capacity_jobs_s"] = cap
        live["capacity_measurement"] = {"jobs": n_cap, "concurrency": 8, "wall_s": closed.wall_s,
                                        "throughput_rps": closed.throughput_rps, "errors": dict(closed.errors)}
        say(f"      live capacity (closed loop, agnostic): {cap:.1f} jobs/s "
            f"(profile says {live['profile_capacity_jobs_s']:.1f})")
        wdir = out / "workloads"
        files = {}
        for f in factors:
            rate = f * cap
            wl = W.poisson(rate, seconds, args.live_delta, best, args.seed, slack_ms=args.live_slack_ms)
            files[f] = wl.save(wdir / f"live-poisson-x{f:g}.json")
        live["workload_files"] = {f"{f:g}": str(p.relative_to(out)) for f, p in files.items()}

        def budget(job):
            return W.full_latency_ms(model, job.size) + job.slack_ms

        # one calibration trace: the replayed rate, another seed
        f_cal = min(factors, key=lambda x: abs(x - args.replay_factor))
        cal_file = W.poisson(f_cal * cap, seconds, args.live_delta, best, args.seed + CALIBRATION_SEED_OFFSET,
                             slack_ms=args.live_slack_ms).save(wdir / f"live-calibration-x{f_cal:g}.json")
        for name in POLICIES:
            if name != stack.selection.policy or "selection" not in stack.services:
                # one selection service at a time: the policies never compete for the cores
                stack.stop_service("selection")
                stack.start_selection("selection", name)
            client = MoselClient(stack.endpoint("selection"))
            client.wait_ready(60.0)
            # warm-up: a few single-request jobs (first-call costs), not recorded
            warm = W.Workload([W.WorkloadJob(0.05 * i, 1, 0.0, 1000.0) for i in range(5)], {})
            run_open_loop(client.stub, stack.model, samples, warm, lambda j: 2000.0)
            # calibration of the simulator from what this service measures (never the traces)
            t_cal = time.perf_counter()
            cal = calibrate_from_service(client, model, samples, W.Workload.load(cal_file), budget)
            cal["wall_s"] = time.perf_counter() - t_cal
            live["calibration"][name] = cal
            lanes = ", ".join(f"{x['name']} {x['overhead_ms']:.2f} ms + {x['scale']:.2f}x" for x in cal["lanes"])
            say(f"      calibration {name:>10}: lanes {lanes}; finishing {cal['finishing']['overhead_ms']:.2f} ms; "
                f"transit {cal['transit_ms']:.2f} ms; depth {cal['pipeline_depth']} ({cal['jobs']} jobs, "
                f"{cal['wall_s']:.1f} s)")
            for f in factors:
                wl = W.Workload.load(files[f])
                r = run_open_loop(client.stub, stack.model, samples, wl, budget, progress=False,
                                  desc=f"{name} x{f:g}", job_prefix=f"{name}-{f:g}")
                s = r.summary()
                s.update(rate_factor=f, rate_jobs_s=f * cap, offered_rps=wl.requests / seconds)
                live["runs"][name].append(s)
                say(f"      live {name:>10} x{f:<4g}: {s['served_jobs']}/{s['jobs']} jobs answered, miss "
                    f"{s['miss_rate']:.1%}, mean JCT {fmt(s['mean_jct_ms'], 1)} ms, codes {s['codes']}")
                (out / "traces").mkdir(exist_ok=True)
                (out / "traces" / f"live-{name}-x{f:g}.json").write_text(
                    json.dumps([j.to_dict() for j in r.jobs], indent=0))
            client.close()
        live["max_sustained"] = {name: live_sustained(live["runs"][name]) for name in POLICIES}
        # (3) replay in the simulator
        f = min(factors, key=lambda x: abs(x - args.replay_factor))
        wl = W.Workload.load(files[f])
        specs = W.to_sim_jobs(wl, model)
        for name in POLICIES:
            lv = next(s for s in live["runs"][name] if s["rate_factor"] == f)
            cal = live["calibration"][name]
            depth = cal["pipeline_depth"]
            raw = simulate(specs, make_policy(name), model, seed=args.seed, pipeline_depth=depth).summary
            calibrated = simulate(specs, make_policy(name), model, seed=args.seed, pipeline_depth=depth,
                                  lane_costs=[step_cost(x) for x in cal["lanes"]],
                                  finish_cost=step_cost(cal["finishing"]),
                                  transit_s=cal["transit_ms"] * 1e-3).summary
            row = replay_compare(lv, calibrated)
            row.update(rate_factor=f, live_expected_accuracy=lv["expected_accuracy"], pipeline_depth=depth,
                       transit_ms=cal["transit_ms"], uncalibrated=replay_compare(lv, raw))
            live["replay"][name] = row
    finally:
        codes = stack.stop()
        live["exit_codes"] = codes
    return live

