"""`mosel bench paper --quick`, workload files and the open-loop generator.

No headline numbers are asserted (benchmarks measure, tests check consistency)."""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from mosel.bench.paper import measures as BP
from mosel.bench.paper.live import replay_compare
from mosel.bench.paper.report import fmt
from mosel.sim import workload as W

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- workloads


def test_workload_round_trip(tmp_path):
    wl = W.poisson(5.0, 20.0, 0.03, 0.7432, seed=3)
    path = wl.save(tmp_path / "w.json")
    back = W.Workload.load(path)
    assert back.jobs == wl.jobs
    assert back.meta == json.loads(json.dumps(wl.meta))
    b = W.bursty(5.0, 20.0, 0.06, 0.7432, seed=4)
    assert W.Workload.load(b.save(tmp_path / "b.json")).jobs == b.jobs
    with pytest.raises(ValueError):
        W.Workload.from_dict({"format": "other", "version": 1, "jobs": []})


def test_generators_deterministic_and_floors():
    for gen in (W.poisson, W.bursty):
        a = gen(4.0, 50.0, 0.09, 0.7432, seed=11)
        b = gen(4.0, 50.0, 0.09, 0.7432, seed=11)
        c = gen(4.0, 50.0, 0.09, 0.7432, seed=12)
        assert a.jobs == b.jobs and a.jobs != c.jobs
        assert all(0.7432 - 0.09 - 1e-12 <= j.min_accuracy <= 0.7432 for j in a.jobs)
        arrivals = [j.arrival_s for j in a.jobs]
        assert arrivals == sorted(arrivals) and arrivals[-1] <= 50.0
    assert W.bursty(4.0, 50.0, 0.03, 0.7, seed=1).jobs[0].slack_ms == 55.0
    assert W.poisson(4.0, 50.0, 0.03, 0.7, seed=1).jobs[0].slack_ms == 17.0


def test_job_size_distribution_matches_paper():
    wl = W.poisson(1000.0, 40.0, 0.03, 0.74, seed=0)  # ~40k jobs
    sizes = [j.size for j in wl.jobs]
    assert min(sizes) >= 1 and max(sizes) <= 32
    expected = BP.size_distribution()
    n = len(sizes)
    for k in (1, 2, 5, 10):
        observed = sizes.count(k) / n
        sd = math.sqrt(expected[k] * (1 - expected[k]) / n)
        assert abs(observed - expected[k]) < 5 * sd + 1e-3, (k, observed, expected[k])
    assert abs(statistics.fmean(sizes) - BP.mean_job_size()) < 0.1
    # and the reference draw: max(1, int(N(1, 6)))
    rng = random.Random(0)
    ref = [max(1, int(rng.gauss(1.0, 6.0))) for _ in range(n)]
    assert abs(statistics.fmean(ref) - statistics.fmean(sizes)) < 0.1


def test_to_sim_jobs_deadlines():
    from mosel.sim.simulator import paper_model

    model = paper_model()
    wl = W.poisson(20.0, 5.0, 0.03, 0.7432, seed=1)
    specs = W.to_sim_jobs(wl, model)
    full = model.full_configuration
    for j, s in zip(wl.jobs, specs):
        want = j.arrival_s + (model.profiles.cost.latency({full: j.size}) + j.slack_ms) * 1e-3
        assert s.deadline == pytest.approx(want) and s.size == j.size and s.min_accuracy == j.min_accuracy


def test_replay_compare_tolerance():
    from mosel.sim.simulator import Summary

    def summ(served, jobs, mean, p99):
        return Summary(jobs=jobs, requests=jobs, counts={"served": served, "late": 0, "expired": 0, "dropped": 0,
                                                         "refused": jobs - served}, duration_s=1.0,
                       throughput_rps=0.0, goodput_rps=0.0, miss_rate=1 - served / jobs, mean_jct_ms=mean,
                       p99_jct_ms=p99, mean_accuracy=0.9, floor_violations=0, rounds=1)

    live = {"on_time_jobs": 90, "jobs": 100, "mean_jct_ms": 20.0, "p99_jct_ms": 60.0}
    ok = replay_compare(live, summ(80, 100, 10.0, 30.0))
    assert ok["within_tolerance"] and ok["jct_ratio_live_over_sim"] == pytest.approx(2.0)
    assert ok["p99_ratio_live_over_sim"] == pytest.approx(2.0)
    assert not replay_compare(live, summ(100, 100, 2.0, 3.0))["within_tolerance"]  # JCT off by 10x
    assert not replay_compare(live, summ(70, 100, 20.0, 60.0))["within_tolerance"]  # on-time off by 0.2


# ----------------------------------------------------------------------------- open loop vs a slow server


class _SlowSelection:
    """In-process SelectionService whose InferJob sleeps (a server slower than the load)."""

    def __init__(self, delay_s: float, fail_every: int = 0):
        self.delay_s = delay_s
        self.fail_every = fail_every  # refuse job k when k % fail_every == 0
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    def InferJob(self, request, context):
        from mosel.protocol.v1 import selection_pb2

        k = int(request.job_id.rsplit("-", 1)[1])
        if self.fail_every and k % self.fail_every == 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"slo.deadline_unix_ms is {k + 3} ms in the past")
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
        results = [selection_pb2.InferResponse(id=it.id, label=1, configuration="audio", expected_accuracy=0.9)
                   for it in request.items]
        return selection_pb2.InferJobResponse(job_id=request.job_id, results=results, expected_accuracy=0.9)


def _serve(servicer):
    from mosel.protocol.v1 import selection_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    handler = selection_pb2_grpc.SelectionServiceServicer()
    handler.InferJob = servicer.InferJob
    selection_pb2_grpc.add_SelectionServiceServicer_to_server(handler, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return server, channel, selection_pb2_grpc.SelectionServiceStub(channel)


def test_open_loop_keeps_schedule_against_slow_server():
    from mosel.sim.loadgen import run_open_loop

    servicer = _SlowSelection(delay_s=0.3)
    server, channel, stub = _serve(servicer)
    try:
        import numpy as np

        samples = [({"audio": np.zeros(4, dtype=np.float32)}, 1)]
        jobs = [W.WorkloadJob(0.02 * k, 1 + k % 3, 0.5, 17.0) for k in range(30)]  # 50 jobs/s for 0.6 s
        wl = W.Workload(jobs, {"duration_s": 0.6})
        res = run_open_loop(stub, "m", samples, wl, budget_ms_of=lambda j: 1000.0)
        s = res.summary()
        assert s["jobs"] == 30 and s["served_jobs"] == 30 and s["codes"] == {"OK": 30}
        assert s["served_requests"] == sum(j.size for j in jobs) <= res.requests_sent
        # sends follow the schedule, not the 0.3 s service time (a closed loop of 1 would take 9 s)
        assert s["max_send_lag_ms"] < 150.0, s["max_send_lag_ms"]
        assert servicer.max_in_flight >= 5
        assert all(r.latency_ms >= 290.0 for r in res.jobs)
        assert res.wall_s < 5.0
        assert s["measured_accuracy"] == 1.0 and s["floor_violations"] == 0
    finally:
        channel.close()
        server.stop(0)


def test_open_loop_counts_each_failure_cause_once():
    import numpy as np

    from mosel.sim.loadgen import run_open_loop

    server, channel, stub = _serve(_SlowSelection(delay_s=0.0, fail_every=3))
    try:
        samples = [({"audio": np.zeros(4, dtype=np.float32)}, 1)]
        wl = W.Workload([W.WorkloadJob(0.005 * k, 1, 0.5, 17.0) for k in range(12)], {"duration_s": 0.06})
        res = run_open_loop(stub, "m", samples, wl, budget_ms_of=lambda j: 1000.0)
        s = res.summary()
        assert s["codes"] == {"OK": 8, "DEADLINE_EXCEEDED": 4}
        assert s["error_reasons"] == {"slo.deadline_unix_ms is N ms in the past": 4}
        assert res.jobs[3].detail == "slo.deadline_unix_ms is 6 ms in the past" and res.jobs[1].detail == ""
    finally:
        channel.close()
        server.stop(0)


# ----------------------------------------------------------------------------- the quick bench


def _md_tables(md: str) -> dict[str, list[list[str]]]:
    """### heading -> rows (cells) of the pipe table under it."""
    out, current = {}, None
    for line in md.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            out[current] = []
        elif line.startswith("#"):
            current = None
        elif current and line.startswith("| ") and not line.startswith("|---"):
            out[current].append([c.strip() for c in line.strip("|").split("|")])
    return out


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, tiny_model_home):
    out = tmp_path_factory.mktemp("paper")
    home = tmp_path_factory.mktemp("live") / "home"
    shutil.copytree(tiny_model_home, home)
    cmd = [sys.executable, "-m", "mosel.cli", "bench", "paper", "--quick", "--out", str(out), "--live-home", str(home),
           "--live-seconds", "1.5"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_quick_report_files(quick_report):
    out, proc = quick_report
    for name in ("report.md", "report.json", "tvlt_profile.json", "sim_throughput.png", "sim_jct_accuracy.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "max sustained throughput" in proc.stdout
    assert list((out / "workloads").glob("*.json"))
    for f in (out / "workloads").glob("*.json"):
        W.Workload.load(f)


def test_quick_report_consistent(quick_report):
    out, _ = quick_report
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    tables = _md_tables(md)
    sim = rep["simulation"]
    assert "latency-by-architecture plus published accuracy" in md
    assert set(sim["poisson"]) == {f"{d:g}" for d in BP.DELTAS} == set(rep["headline"])
    for kind in ("poisson", "bursty"):
        for key, per in sim[kind].items():
            assert set(per) == set(BP.POLICIES)
            for name, pts in per.items():
                rows = tables[f"{kind} delta={key} policy={name}"]
                assert len(rows) == len(pts) + 1  # header
                header = rows[0]
                for p, row in zip(pts, rows[1:]):
                    for col in ("miss_rate", "goodput_rps", "mean_jct_ms", "served_jobs", "floor_violations"):
                        assert row[header.index(col)] == fmt(p[col]), (kind, key, name, col)
                    assert p["served_jobs"] <= p["jobs"]
                    assert p["served_jobs"] + p["late"] + p["expired"] + p["dropped"] + p["refused"] == p["jobs"]
                    assert p["served_below_floor"] == 0 and p["floor_violations"] == 0
    for key, row in rep["headline"].items():
        for name in BP.POLICIES:
            best = BP.max_sustained(sim["poisson"][key][name])
            assert row[name]["max_sustained_rps"] == (best["goodput_rps"] if best else 0.0)
    live = rep["live"]
    assert live is not None, rep.get("live_note")
    for name in BP.POLICIES:
        runs = live["runs"][name]
        assert len(runs) == len(BP.QUICK_LIVE_FACTORS)
        rows = tables[f"live policy={name}"]
        header = rows[0]
        for p, row in zip(runs, rows[1:]):
            assert p["served_requests"] <= p["requests"] and p["served_jobs"] <= p["jobs"]
            assert p["floor_violations"] == 0
            assert row[header.index("miss_rate")] == fmt(p["miss_rate"])
            assert row[header.index("served_jobs")] == fmt(p["served_jobs"])
        assert name in live["replay"]
        rep_row, cal = live["replay"][name], live["calibration"][name]
        assert cal["lanes"] and all(x["scale"] > 0 and x["overhead_ms"] >= 0 and x["samples"] > 0
                                    for x in cal["lanes"])
        assert cal["finishing"]["samples"] > 0 and cal["transit_ms"] >= 0
        assert rep_row["pipeline_depth"] == cal["pipeline_depth"] == 2
        for r in (rep_row, rep_row["uncalibrated"]):
            assert 0.0 <= r["sim_on_time_fraction"] <= 1.0 and 0.0 <= r["live_on_time_fraction"] <= 1.0
    assert "uncal. sim on-time" in md and "cal. within tol." in md
    assert set(live["max_sustained"]) == set(BP.POLICIES) and "highest live load with <= 1% misses" in md
    for name, best in live["max_sustained"].items():
        if best is not None:
            assert best["miss_rate"] <= BP.MISS_TARGET
            assert best == {k: next(p for p in live["runs"][name] if p["rate_factor"] == best["rate_factor"])[k]
                            for k in best}
    for trace in (out / "traces").glob("*.json"):
        for j in json.loads(trace.read_text()):
            if j["code"] == "OK":
                assert j["expected_accuracy"] >= j["min_accuracy"] - 1e-9
                assert j["served"] == j["size"]
