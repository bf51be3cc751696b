"""Part (1) of `mosel bench paper`: the simulation sweep on the TVLT model (latency by
architecture, published accuracy) and its headline: max sustained throughput and JCT of
each policy, and the mosel / agnostic ratios the paper reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mosel.bench.paper.measures import (BURSTY_FACTORS, DELTAS, MISS_TARGET, POLICIES, QUICK_RATE_FACTORS,
                                        RATE_FACTORS, agnostic_capacity, finite, max_sustained, mean_job_size, ratio)
from mosel.models.tvlt import paper_facts as paper
from mosel.sim import workload as W

def _summary_dict(s, offered_rps: float, rate: float, factor: float) -> dict:
    c = s.counts
    return {"rate_factor": factor, "rate_jobs_s": rate, "offered_rps": offered_rps, "jobs": s.jobs,
            "requests": s.requests, "served_jobs": c["served"], "late": c["late"], "expired": c["expired"],
            "dropped": c["dropped"], "refused": c["refused"], "miss_rate": s.miss_rate,
            "throughput_rps": s.throughput_rps, "goodput_rps": s.goodput_rps, "mean_jct_ms": finite(s.mean_jct_ms),
            "p99_jct_ms": finite(s.p99_jct_ms), "accuracy": finite(s.mean_accuracy),
            "floor_violations": s.floor_violations, "rounds": s.rounds}


def _degraded(outcomes, model) -> int:
    full = model.full_configuration
    return sum(1 for o in outcomes if o.status in ("served", "late") and any(c != full for c in o.configurations))



def _at(points: list[dict], factor: float) -> dict | None:
    for p in points:
        if abs(p["rate_factor"] - factor) < 1e-9:
            return p
    return None



def tvlt_sim_model(prof):
    from mosel.sim.simulator import SimModel
    from mosel.planning.solver import solve_matrix

    cost = prof.cost()
    matrix = solve_matrix(cost, paper.ACCURACIES, max_batch=cost.max_batch, step=paper.TARGET_STEP)
    return SimModel(paper.MODEL, cost, matrix, paper.ACCURACIES)


def simulate_sweep(model, deltas, factors, bursty_factors, n_jobs: int, noise: float, seed: int, slack_ms: float,
                   trace_slack_ms: float, say=print) -> dict:
    from mosel.scheduling.registry import make_policy
    from mosel.sim.simulator import simulate

    cap = agnostic_capacity(model)
    best = max(model.accuracy_of(c) for c in model.configurations)
    res: dict = {"capacity_jobs_s": cap, "mean_job_size": mean_job_size(), "best_accuracy": best,
                 "poisson": {}, "bursty": {}}
    for delta in deltas:
        key = f"{delta:g}"
        res["poisson"][key] = {p: [] for p in POLICIES}
        res["bursty"][key] = {p: [] for p in POLICIES}
        for kind, grid in (("poisson", factors), ("bursty", bursty_factors)):
            for f in grid:
                rate = f * cap
                duration = n_jobs / rate
                if kind == "poisson":
                    wl = W.poisson(rate, duration, delta, best, seed, slack_ms=slack_ms)
                else:
                    wl = W.bursty(rate, duration, delta, best, seed, slack_ms=trace_slack_ms)
                specs = W.to_sim_jobs(wl, model)
                offered = wl.requests / duration
                for name in POLICIES:
                    r = simulate(specs, make_policy(name), model, noise=noise, seed=seed)
                    d = _summary_dict(r.summary, offered, rate, f)
                    d["degraded_jobs"] = _degraded(r.outcomes, model)
                    d["served_below_floor"] = sum(1 for o in r.outcomes
                                                  if o.status == "served" and o.accuracy < o.min_accuracy - 1e-9)
                    res[kind][key][name].append(d)
        say(f"      delta {key}: {len(factors)} Poisson + {len(bursty_factors)} bursty rates x {len(POLICIES)} policies")
    return res


def sim_headline(sim: dict, deltas) -> dict:
    out = {}
    for delta in deltas:
        key = f"{delta:g}"
        pts = sim["poisson"][key]
        row = {}
        for name in POLICIES:
            best = max_sustained(pts[name])
            a1, a15 = _at(pts[name], 1.0), _at(pts[name], 1.5)
            row[name] = {"max_sustained_rps": best["goodput_rps"] if best else 0.0,
                         "at_rate_factor": best["rate_factor"] if best else None,
                         "accuracy_at_max": best["accuracy"] if best else None,
                         "jct_mean_ms_1x": a1["mean_jct_ms"] if a1 else None, "jct_p99_ms_1x": a1["p99_jct_ms"] if a1 else None,
                         "jct_mean_ms_1_5x": a15["mean_jct_ms"] if a15 else None,
                         "jct_p99_ms_1_5x": a15["p99_jct_ms"] if a15 else None}
        for name in POLICIES:
            pk = max(pts[name], key=lambda p: p["goodput_rps"])
            row[name]["peak_goodput_rps"] = pk["goodput_rps"]
            row[name]["peak_goodput_at_rate_factor"] = pk["rate_factor"]
            row[name]["peak_goodput_miss_rate"] = pk["miss_rate"]
            lo = [p for p in pts[name] if p["miss_rate"] <= 0.10 and p["floor_violations"] == 0]
            row[name]["max_sustained_rps_10pct"] = max((p["goodput_rps"] for p in lo), default=0.0)
        row["peak_goodput_ratio_mosel_vs_agnostic"] = ratio(row["mosel"]["peak_goodput_rps"],
                                                             row["agnostic"]["peak_goodput_rps"])
        row["throughput_ratio_10pct_mosel_vs_agnostic"] = ratio(row["mosel"]["max_sustained_rps_10pct"],
                                                                 row["agnostic"]["max_sustained_rps_10pct"])
        row["throughput_ratio_mosel_vs_agnostic"] = ratio(row["mosel"]["max_sustained_rps"],
                                                           row["agnostic"]["max_sustained_rps"])
        row["jct_ratio_agnostic_vs_mosel_1x"] = ratio(row["agnostic"]["jct_mean_ms_1x"], row["mosel"]["jct_mean_ms_1x"])
        row["jct_ratio_agnostic_vs_mosel_1_5x"] = ratio(row["agnostic"]["jct_mean_ms_1_5x"],
                                                         row["mosel"]["jct_mean_ms_1_5x"])
        out[key] = row
    return out


def headline_text(hl: dict) -> str:
    row = hl.get("0.03") or next(iter(hl.values()))
    key = "0.03" if "0.03" in hl else next(iter(hl))
    thr = row["throughput_ratio_mosel_vs_agnostic"]
    jct = row["jct_ratio_agnostic_vs_mosel_1_5x"]
    jct1 = row["jct_ratio_agnostic_vs_mosel_1x"]
    parts = [f"At delta = {key}: mosel / agnostic max sustained throughput = "
             + (f"{thr:.2f}x" if thr is not None else
                f"undefined (agnostic {row['agnostic']['max_sustained_rps']:.4f} req/s, mosel "
                f"{row['mosel']['max_sustained_rps']:.4f} req/s)")
             + " (paper: 3.6x" + (f"; {'short by ' + format(3.6 / thr, '.2f') + 'x' if thr < 3.6 else 'reached'}"
                                  if thr else "") + ")."]
    parts.append("Agnostic / mosel mean JCT = "
                 + (f"{jct1:.2f}x" if jct1 else "-") + " at C and " + (f"{jct:.2f}x" if jct else "-")
                 + " at 1.5 C (paper: 11x" + (f"; {'short by ' + format(11 / max(jct or 0, jct1 or 0), '.1f') + 'x' if max(jct or 0, jct1 or 0) < 11 else 'reached'}" if (jct or jct1) else "") + ").")
    r10 = row.get("throughput_ratio_10pct_mosel_vs_agnostic")
    pk = row.get("peak_goodput_ratio_mosel_vs_agnostic")
    parts.append("Secondary: goodput ratio at <= 10% misses " + (f"{r10:.2f}x" if r10 else "-")
                 + ", peak-goodput ratio " + (f"{pk:.2f}x" if pk else "-") + ".")
    return " ".join(parts)


def run_simulation(args, out: Path, quick: bool, timings: dict[str, float], say) -> dict:
    """Part (1) as the command runs it: profile (or load) the TVLT latency, sweep, headline; the
    workload files of the first delta go to out/workloads. Returns the report's entries."""
    from mosel.models.tvlt.latency import TVLTProfile, profile_tvlt

    deltas = tuple(args.deltas) if args.deltas else DELTAS
    factors = QUICK_RATE_FACTORS if quick else RATE_FACTORS
    bursty_factors = (1.0,) if quick else BURSTY_FACTORS
    n_jobs = args.jobs or (300 if quick else 2000)

    # (1) TVLT latency by architecture
    say(f"[1/4] TVLT latency on {args.device} ...")
    t = time.perf_counter()
    if args.tvlt_profile:
        prof = TVLTProfile.from_dict(json.loads(Path(args.tvlt_profile).read_text()))
    else:
        layers = 1 if quick else 12
        prof = profile_tvlt(args.device, layers=layers,
                            progress=lambda c, b, ms: say(f"      {c:>12} b={b:<2} {ms:10.1f} ms"))
    (out / "tvlt_profile.json").write_text(json.dumps(prof.to_dict(), indent=1))
    timings["tvlt_profile_s"] = time.perf_counter() - t
    say(f"      {prof.method}")

    say("[2/4] simulation: agnostic / aggressive / mosel on the same workloads ...")
    t = time.perf_counter()
    model = tvlt_sim_model(prof)
    full_b1_ms = W.full_latency_ms(model, 1)
    slack_ms = args.slack_ms if args.slack_ms is not None else round(args.slack_factor * full_b1_ms, 3)
    trace_slack_ms = (args.trace_slack_ms if args.trace_slack_ms is not None
                      else round(slack_ms * 55.0 / paper.DEADLINE_SLACK_MS, 3))
    slack_rule = ("absolute (--slack-ms)" if args.slack_ms is not None else
                  f"{args.slack_factor:g} x full-modality b=1 latency ({full_b1_ms:.1f} ms on {args.device})")
    say(f"      slack {slack_ms:.1f} ms ({slack_rule}), trace slack {trace_slack_ms:.1f} ms")
    sim = simulate_sweep(model, deltas, factors, bursty_factors, n_jobs, args.noise, args.seed, slack_ms,
                         trace_slack_ms, say=say)
    # the workload files of delta[0] (for the tuning study and reproducibility)
    cap = sim["capacity_jobs_s"]
    for f in (1.0, 1.5):
        W.poisson(f * cap, n_jobs / (f * cap), deltas[0], sim["best_accuracy"], args.seed,
                  slack_ms=slack_ms).save(out / "workloads" / f"sim-poisson-d{deltas[0]:g}-x{f:g}.json")
    hl = sim_headline(sim, deltas)
    timings["simulation_s"] = time.perf_counter() - t

    return {
        "parameters": {"deltas": list(deltas), "rate_factors": list(factors), "bursty_factors": list(bursty_factors),
                       "jobs_per_run": n_jobs, "noise": args.noise, "slack_ms": slack_ms,
                       "trace_slack_ms": trace_slack_ms, "slack_rule": slack_rule, "seed": args.seed,
                       "miss_target": MISS_TARGET, "max_round_items": 32, "accuracies": dict(paper.ACCURACIES)},
        "tvlt": prof.to_dict(), "simulation": sim, "headline": hl, "headline_text": headline_text(hl),
    }
