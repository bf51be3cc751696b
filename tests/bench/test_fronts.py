"""`mosel bench fronts --quick` on the tiny model: the report's structure, and that every path
answered the same job with the same labels. No timing is asserted (benchmarks measure).

The bench runs as a subprocess: it loads the generated `inference` messages, which must stay
out of this process (tests/frontends drives the fronts with tritonclient.grpc, whose copy of
those messages cannot share a protobuf pool with ours)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mosel.bench import fronts as F

ROOT = Path(__file__).resolve().parents[2]
PATHS = {1: ["v1 InferJob", "v1 Infer", "v2 gRPC", "v2 HTTP JSON", "v2 HTTP binary"],
         32: ["v1 InferJob", "v2 gRPC", "v2 HTTP JSON", "v2 HTTP binary"]}


def test_importing_the_bench_leaves_the_kserve_stubs_out():
    assert "mosel.protocol.kserve.grpc_service_pb2" not in sys.modules


def test_a_different_answer_stops_the_bench():
    full = {"audio", "image", "video"}
    ref = F.Answer(np.array([3, 1]), ["audio+image+video"] * 2, np.zeros((2, 10), np.float32), 0)
    assert F.check_same(ref, F.Answer(ref.labels.copy(), ref.configurations, ref.scores + 0.5, 0), "x", full) == 0.5
    with pytest.raises(F.BenchMismatch, match="labels"):
        F.check_same(ref, F.Answer(np.array([3, 2]), ref.configurations, ref.scores, 0), "x", full)
    with pytest.raises(F.BenchMismatch, match="audio\\+image"):
        F.check_same(ref, F.Answer(ref.labels, ["audio+image+video", "audio+image"], ref.scores, 0), "x", full)


def test_the_job_is_dense_and_the_same_rows_each_time():
    rng = np.random.default_rng(0)
    samples = [({"audio": rng.standard_normal((n, 4)).astype(np.float32), "image": np.full((3, 3), n, np.uint8)}, 0)
               for n in (5, 9, 7, 2)]
    job = F.make_job(samples, 3)
    assert job.size == 3 and job.rows["audio"].shape == (3, 5, 4) and job.rows["image"].shape == (3, 3, 3)
    assert job.rows["image"][:, 0, 0].tolist() == [9, 7, 5]  # the samples with the most data
    assert np.array_equal(F.make_job(samples, 3).rows["audio"], job.rows["audio"])
    with pytest.raises(ValueError):
        F.make_job(samples, 5)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, tiny_model_home):
    out = tmp_path_factory.mktemp("fronts")
    home = tmp_path_factory.mktemp("fronts_home") / "home"
    shutil.copytree(tiny_model_home, home)  # the bench's store and logs stay out of the shared home
    cmd = [sys.executable, "-m", "mosel.cli", "bench", "fronts", "--quick", "--size", "tiny", "--home", str(home),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out, proc


def test_quick_report_structure(quick_run):
    out, proc = quick_run
    report = json.loads((out / "fronts.json").read_text())
    assert report["benchmark"] == "fronts" and report["size"] == "tiny" and report["policy"] == "agnostic"
    assert report["baseline"] == "v1 InferJob" and report["labels_agree"] is True
    assert all(code == 0 for code in report["exit_codes"].values()), report["exit_codes"]
    for b, names in PATHS.items():
        rows = [r for r in report["rows"] if r["batch"] == b]
        assert [r["path"] for r in rows] == names
        for r in rows:
            assert r["calls"] == report["repeats"][str(b)] and r["labels_agree"] is True
            assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
            assert r["ratio_median"] > 0 and r["max_score_diff"] < 1e-4
        assert rows[0]["ratio_median"] == rows[0]["ratio_p90"] == 1.0
    table = (out / "fronts.md").read_text().splitlines()
    assert table[0].startswith("| batch | path |") and len(table) == 2 + len(report["rows"])
    assert "v2 HTTP JSON" in proc.stdout and "x v1 (median)" in proc.stdout
