"""`mosel bench fronts`: what the Open Inference Protocol (KServe v2) fronts cost over mosel.v1
for the same job, at batch 1 and batch 32, side by side (target: at most 1.1x).

One stack (store, one encoder per modality, selection service with policy agnostic and the v2
HTTP front on a free port; separate processes over loopback, as `mosel up` runs them) serves
AV-Digits at the chosen size preset. One job per batch size, built once from the pack's
test_samples (all modalities; the b samples with the most data, sequences cropped to the
shortest among them, since v2 tensors are dense), goes the same way through every path:

- `v1 InferJob` (the baseline): mosel.v1 InferJob via mosel.client, one job of b items;
- `v1 Infer` (batch 1 only): mosel.v1 Infer, the single-request call;
- `v2 gRPC`: inference.GRPCInferenceService/ModelInfer with raw_input_contents, the generated
  stubs of mosel.protocol.kserve on a plain grpc channel (as tritonclient sends it);
- `v2 HTTP JSON`: POST /v2/models/{model}/infer, JSON tensors (flat `data` lists), on one
  persistent http.client connection;
- `v2 HTTP binary`: the same POST with Triton's binary tensor data extension (inputs and
  outputs as raw bytes after the JSON), to tell the cost of HTTP from the cost of JSON.

Every timed call is client-side wall time from the numpy rows to the decoded labels: build
the request, send, wait, parse the answer ("encode" is the request-building part alone).
After a warm-up, each repeat serves the job once through every path, in an order shuffled
per repeat (seeded), so that no path always follows the same other one (a call that comes
after an idle gap, e.g. after an HTTP call's stall, finds the services colder).
Each answer must hold the same labels as the first mosel.v1 answer and every row must run
with all modalities; otherwise the run stops with an error (it would compare different work).
The budget is 10 s and the floor 0, so nothing is dropped or refused.
"""

from __future__ import annotations

import datetime
import gc
import http.client
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mosel.tables import format_table

MODEL = "av-digits"
BATCHES = (1, 32)
BASELINE = "v1 InferJob"
TARGET_RATIO = 1.1
BUDGET_MS = 10_000.0
OUTPUTS = ("label", "scores")
# (timed calls at batch 1, at batch 32, warm-up calls per path and batch)
DEFAULT_REPEATS, QUICK_REPEATS = (200, 50, 10), (12, 4, 2)


class BenchMismatch(RuntimeError):
    """Two paths gave different answers to the same job: the timings would compare different work."""


def register(sub) -> None:
    p = sub.add_parser("fronts", help="KServe v2 gRPC / HTTP fronts vs mosel.v1 on the same job (batch 1 and 32)")
    p.add_argument("--size", default="default", help="AV-Digits size preset to train if the home has no "
                   "checkpoint (default: default; a home keeps the checkpoint it has)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed calls per path at batch 1; batch 32 gets a quarter (default {DEFAULT_REPEATS[0]})")
    p.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_REPEATS[0]} / {QUICK_REPEATS[1]} calls")
    p.add_argument("--seed", type=int, default=0, help="seed of the call order (default 0)")
    p.add_argument("--home", default=None, help="state directory of the stack (default $MOSEL_HOME)")
    p.add_argument("--out", default=None, help="write fronts.json and fronts.md here")
    p.set_defaults(func=run)


# ---- the job ---------------------------------------------------------------------------------
@dataclass
class Job:
    rows: dict[str, np.ndarray]  # modality -> [b, ...], dense, little-endian

    @property
    def size(self) -> int:
        return len(next(iter(self.rows.values())))

    @property
    def items(self) -> list[dict[str, np.ndarray]]:
        return [{m: a[i] for m, a in self.rows.items()} for i in range(self.size)]


def make_job(samples: list, b: int) -> Job:
    """The b samples with the most data, each modality cropped to its shortest sequence among them."""
    chosen = sorted(samples, key=lambda s: -sum(a.size for a in s[0].values()))[:b]
    if len(chosen) < b:
        raise ValueError(f"only {len(chosen)} test samples for a job of {b}")
    rows = {}
    for m in chosen[0][0]:
        arrays = [x[m] for x, _ in chosen]
        steps = min(a.shape[0] for a in arrays)
        dense = np.stack([a[:steps] for a in arrays])
        rows[m] = np.ascontiguousarray(dense, dtype=dense.dtype.newbyteorder("<"))
    return Job(rows)


@dataclass
class Answer:
    labels: np.ndarray
    configurations: list[str]
    scores: np.ndarray
    encode_ns: int


def check_same(reference: Answer, answer: Answer, path: str, full: set[str]) -> float:
    """Fail loudly unless `answer` is the reference's work (same labels, every row with all
    modalities); returns the largest score difference."""
    if not np.array_equal(reference.labels, answer.labels):
        raise BenchMismatch(f"{path} answered labels {answer.labels.tolist()}, mosel.v1 {reference.labels.tolist()}")
    partial = sorted({c for c in answer.configurations if set(c.split("+")) != full})
    if partial or len(answer.configurations) != len(answer.labels):
        raise BenchMismatch(f"{path} ran {partial or answer.configurations} for a job of {len(answer.labels)} rows; "
                            f"every row must run {'+'.join(sorted(full))}")
    return float(np.max(np.abs(reference.scores - answer.scores)))


# ---- the paths -------------------------------------------------------------------------------
def v1_paths(address: str) -> tuple[dict[str, Callable[[Job], Answer]], Callable[[], None]]:
    from mosel.client import MoselClient, infer_request, job_request

    client = MoselClient(address, timeout_s=60.0)
    client.wait_ready(60.0)

    def infer_job(job: Job) -> Answer:
        t = time.perf_counter_ns()
        request = job_request(MODEL, job.items, job_id="bench", budget_ms=BUDGET_MS)
        encode = time.perf_counter_ns() - t
        results = client.stub.InferJob(request, timeout=client.timeout_s).results
        return Answer(np.array([r.label for r in results], np.int64), [r.configuration for r in results],
                      np.array([r.scores for r in results], np.float32), encode)

    def infer(job: Job) -> Answer:
        t = time.perf_counter_ns()
        request = infer_request(MODEL, job.items[0], request_id="bench", budget_ms=BUDGET_MS)
        encode = time.perf_counter_ns() - t
        r = client.stub.Infer(request, timeout=client.timeout_s)
        return Answer(np.array([r.label], np.int64), [r.configuration], np.array([r.scores], np.float32), encode)

    return {BASELINE: infer_job, "v1 Infer": infer}, client.close


def v2_grpc_path(address: str) -> tuple[Callable[[Job], Answer], Callable[[], None]]:
    import grpc

    from mosel.frontends.conversions import kserve_datatype
    from mosel.protocol.kserve import grpc_service_pb2 as pb
    from mosel.protocol.kserve import grpc_service_pb2_grpc as pb_grpc

    limit = 2**31 - 1  # tritonclient's channel options
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", limit),
                                                      ("grpc.max_receive_message_length", limit)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    def call(job: Job) -> Answer:
        t = time.perf_counter_ns()
        request = pb.ModelInferRequest(
            model_name=MODEL, id="bench",
            inputs=[pb.ModelInferRequest.InferInputTensor(name=m, datatype=kserve_datatype(a.dtype.name),
                                                          shape=list(a.shape)) for m, a in job.rows.items()],
            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in OUTPUTS],
            raw_input_contents=[a.tobytes() for a in job.rows.values()])
        request.parameters["timeout"].int64_param = int(BUDGET_MS * 1000)
        encode = time.perf_counter_ns() - t
        response = stub.ModelInfer(request, timeout=60.0)
        raw = {o.name: (o, r) for o, r in zip(response.outputs, response.raw_output_contents)}
        (_, labels), (scores_meta, scores) = raw["label"], raw["scores"]
        return Answer(np.frombuffer(labels, "<i8"), response.parameters["configurations"].string_param.split(","),
                      np.frombuffer(scores, "<f4").reshape(tuple(scores_meta.shape)), encode)

    return call, channel.close


def v2_http_paths(address: str) -> tuple[dict[str, Callable[[Job], Answer]], Callable[[], None]]:
    from mosel.frontends.conversions import kserve_datatype
    from mosel.frontends.kserve_http import HEADER_LENGTH

    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60.0)
    path = f"/v2/models/{MODEL}/infer"
    timeout_us = int(BUDGET_MS * 1000)

    def post(body: bytes, headers: dict) -> tuple[dict, bytes]:
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {r.status}: {data[:500]!r}")
        length = r.getheader(HEADER_LENGTH)
        head = int(length) if length is not None else len(data)
        return json.loads(data[:head]), data[head:]

    def answer(doc: dict, values: dict, encode: int) -> Answer:
        shape = {o["name"]: o["shape"] for o in doc["outputs"]}
        return Answer(np.asarray(values["label"], np.int64).reshape(-1), doc["parameters"]["configurations"].split(","),
                      np.asarray(values["scores"], np.float32).reshape(shape["scores"]), encode)

    def json_call(job: Job) -> Answer:
        t = time.perf_counter_ns()
        body = json.dumps({"id": "bench", "parameters": {"timeout": timeout_us},
                           "inputs": [{"name": m, "datatype": kserve_datatype(a.dtype.name), "shape": list(a.shape),
                                       "data": a.reshape(-1).tolist()} for m, a in job.rows.items()],
                           "outputs": [{"name": n} for n in OUTPUTS]}).encode()
        encode = time.perf_counter_ns() - t
        doc, _ = post(body, {"Content-Type": "application/json"})
        return answer(doc, {o["name"]: o["data"] for o in doc["outputs"]}, encode)

    def binary_call(job: Job) -> Answer:
        t = time.perf_counter_ns()
        raws = [a.tobytes() for a in job.rows.values()]
        head = json.dumps({"id": "bench", "parameters": {"timeout": timeout_us, "binary_data_output": True},
                           "inputs": [{"name": m, "datatype": kserve_datatype(a.dtype.name), "shape": list(a.shape),
                                       "parameters": {"binary_data_size": len(r)}}
                                      for (m, a), r in zip(job.rows.items(), raws)],
                           "outputs": [{"name": n} for n in OUTPUTS]}).encode()
        body = b"".join([head, *raws])
        encode = time.perf_counter_ns() - t
        doc, tail = post(body, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))})
        values, offset = {}, 0
        for o in doc["outputs"]:
            size = o["parameters"]["binary_data_size"]
            values[o["name"]] = np.frombuffer(tail[offset:offset + size], "<i8" if o["datatype"] == "INT64" else "<f4")
            offset += size
        return answer(doc, values, encode)

    return {"v2 HTTP JSON": json_call, "v2 HTTP binary": binary_call}, conn.close


# ---- measuring -------------------------------------------------------------------------------
@dataclass
class Timings:
    total_ns: list[int] = field(default_factory=list)
    encode_ns: list[int] = field(default_factory=list)
    max_score_diff: float = 0.0


def measure(paths: dict[str, Callable[[Job], Answer]], job: Job, full: set[str], repeats: int,
            warmup: int, seed: int = 0) -> dict[str, Timings]:
    """Warm-up, then `repeats` rounds in which every path serves the job once, in shuffled order."""
    names = list(paths)
    rng = np.random.default_rng(seed)
    reference = paths[BASELINE](job)
    check_same(reference, reference, BASELINE, full)
    out = {n: Timings() for n in names}
    for _ in range(warmup):
        for n in names:
            check_same(reference, paths[n](job), n, full)
    gc.collect()
    for _ in range(repeats):
        for n in (names[i] for i in rng.permutation(len(names))):
            t = time.perf_counter_ns()
            ans = paths[n](job)
            elapsed = time.perf_counter_ns() - t
            out[n].max_score_diff = max(out[n].max_score_diff, check_same(reference, ans, n, full))
            out[n].total_ns.append(elapsed)
            out[n].encode_ns.append(ans.encode_ns)
    return out


def summarise(b: int, timings: dict[str, Timings]) -> list[dict]:
    ms = lambda values, q: float(np.percentile(np.asarray(values) / 1e6, q))  # noqa: E731
    base_median, base_p90 = ms(timings[BASELINE].total_ns, 50), ms(timings[BASELINE].total_ns, 90)
    rows = []
    for name, t in timings.items():
        median, p90 = ms(t.total_ns, 50), ms(t.total_ns, 90)
        rows.append({"batch": b, "path": name, "calls": len(t.total_ns), "median_ms": median, "p90_ms": p90,
                     "min_ms": ms(t.total_ns, 0), "encode_median_ms": ms(t.encode_ns, 50),
                     "ratio_median": median / base_median, "ratio_p90": p90 / base_p90,
                     "meets_target": median / base_median <= TARGET_RATIO, "labels_agree": True,
                     "max_score_diff": t.max_score_diff})
    return rows


HEADERS = ("batch", "path", "calls", "median ms", "p90 ms", "x v1 (median)", "x v1 (p90)", "encode ms", "<= 1.1x")


def table_rows(rows: list[dict]) -> list[list]:
    return [[r["batch"], r["path"], r["calls"], round(r["median_ms"], 3), round(r["p90_ms"], 3),
             f"{r['ratio_median']:.2f}", f"{r['ratio_p90']:.2f}", round(r["encode_median_ms"], 3),
             "-" if r["path"] == BASELINE else ("yes" if r["meets_target"] else "NO")] for r in rows]


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table_rows(rows)]
    return "\n".join(lines) + "\n"


def bench(home: Path, size: str, repeats: tuple[int, int], warmup: int, seed: int = 0, say=print) -> dict:
    """Start the stack, measure every path at both batch sizes, stop the stack; the report."""
    from mosel.engine.settings import SelectionSettings
    from mosel.launch.stack import Stack, bring_up, free_port
    from mosel.models.registry import get_pack

    http_port = free_port()
    stack = Stack(home=home, model=MODEL, selection=SelectionSettings(policy="agnostic", http_port=http_port))
    closers: list[Callable[[], None]] = []
    try:
        bring_up(stack, size=size, progress=False, say=lambda m: say("      " + m))
        address = stack.endpoint("selection")
        v1, close = v1_paths(address)
        closers.append(close)
        grpc_call, close = v2_grpc_path(address)
        closers.append(close)
        http_calls, close = v2_http_paths(f"127.0.0.1:{http_port}")
        closers.append(close)
        samples = get_pack(MODEL).test_samples(limit=256)
        served_size = stack.open_model().manifest.get("size", {}).get("preset", "")
        rows = []
        for b, n in zip(BATCHES, repeats):
            job = make_job(samples, b)
            paths = {BASELINE: v1[BASELINE], **({"v1 Infer": v1["v1 Infer"]} if b == 1 else {}),
                     "v2 gRPC": grpc_call, **http_calls}
            say(f"batch {b}: {len(paths)} paths x {n} calls (+{warmup} warm-up), "
                + ", ".join(f"{m} {list(a.shape)} {a.dtype}" for m, a in job.rows.items()))
            rows += summarise(b, measure(paths, job, set(job.rows), n, warmup, seed + b))
    finally:
        for close in closers:
            close()
        codes = stack.stop()
    return {"benchmark": "fronts", "date": datetime.date.today().isoformat(), "model": MODEL,
            "size": served_size or size, "policy": "agnostic", "budget_ms": BUDGET_MS, "baseline": BASELINE,
            "target_ratio": TARGET_RATIO, "warmup": warmup, "seed": seed,
            "repeats": dict(zip(map(str, BATCHES), repeats)),
            "cpus": os.cpu_count(), "python": platform.python_version(), "rows": rows,
            "labels_agree": True, "exit_codes": codes}


def run(args) -> int:
    from mosel.config import mosel_home

    base = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    repeats = (args.repeats, max(1, args.repeats // 4)) if args.repeats else base[:2]
    home = Path(args.home) if args.home else mosel_home()
    try:
        report = bench(home, args.size, repeats, base[2], args.seed)
    except BenchMismatch as exc:
        print(f"mosel bench fronts: the paths did different work: {exc}", file=sys.stderr)
        return 1
    print(format_table(HEADERS, table_rows(report["rows"]),
                       title=f"== v2 fronts vs mosel.v1, same job ({MODEL} {report['size']}, policy agnostic, "
                             f"client wall time per call) =="))
    print("encode ms: the client building the request from the numpy rows (part of the call time).")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fronts.json").write_text(json.dumps(report, indent=1))
        (out / "fronts.md").write_text(markdown(report["rows"]))
        print(f"wrote {out / 'fronts.json'} and {out / 'fronts.md'}")
    return 0 if all(c == 0 for c in report["exit_codes"].values()) else 1
