"""KServe v2 over HTTP/REST: the real tritonclient.http, plain urllib (what curl would send),
and the HTTP front started and stopped in this process."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from mosel.client import MoselClient
from mosel.frontends.backend import StubBackend
from mosel.frontends.kserve_http import HEADER_LENGTH, start_http
from tests.frontends.conftest import MODEL, stack_rows

DATATYPES = {"audio": "FP32", "image": "UINT8", "video": "UINT8"}
LONG_US = 20_000_000


def test_the_grpc_stubs_stay_out_of_this_process():
    # tritonclient.grpc and our `inference` messages cannot share a protobuf pool: the HTTP
    # front must not pull the gRPC stubs in.
    assert "mosel.protocol.kserve.grpc_service_pb2" not in sys.modules


@pytest.fixture
def client(front):
    c = th.InferenceServerClient(url=front.http_address)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def mosel(kserve_stack):
    with MoselClient(kserve_stack.endpoint("selection"), timeout_s=30) as c:
        c.wait_ready()
        yield c


def inputs_of(batch, binary=True) -> list[th.InferInput]:
    out = []
    for name, array in batch.items():
        t = th.InferInput(name, list(array.shape), DATATYPES[name])
        t.set_data_from_numpy(array, binary_data=binary)
        out.append(t)
    return out


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one HTTP call, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def infer_json(batch, parameters=None, nested=True, outputs=None) -> bytes:
    doc = {"id": "h1", "inputs": [{"name": name, "datatype": DATATYPES[name], "shape": list(a.shape),
                                   "data": a.tolist() if nested else a.reshape(-1).tolist()}
                                  for name, a in batch.items()]}
    if parameters:
        doc["parameters"] = parameters
    if outputs:
        doc["outputs"] = outputs
    return json.dumps(doc).encode()


# ---- tritonclient.http -------------------------------------------------------------------------
def test_tritonclient_http_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and not client.is_model_ready("no-such-model")
    assert "mosel_modality_selection" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(MODEL)
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("audio", "FP32", [-1, -1, 32]), ("image", "UINT8", [-1, 28, 28]), ("video", "UINT8", [-1, -1, 28, 28])]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("scores", "FP32", [-1, 10]), ("label", "INT64", [-1])]
    config = client.get_model_config(MODEL)
    assert config["max_batch_size"] == 32
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("audio", "TYPE_FP32", [-1, 32]), ("image", "TYPE_UINT8", [28, 28]), ("video", "TYPE_UINT8", [-1, 28, 28])]
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("no-such-model")
    assert info.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http_infer(client, mosel, samples, binary):
    batch = stack_rows(samples[:3])
    outputs = [th.InferRequestedOutput("scores", binary_data=binary), th.InferRequestedOutput("label", binary_data=binary)]
    r = client.infer(MODEL, inputs_of(batch, binary), outputs=outputs, request_id="t1", timeout=LONG_US,
                     parameters={"min_accuracy": 0.5, "allowed_modalities": "audio,video"})
    scores, labels = r.as_numpy("scores"), r.as_numpy("label")
    assert scores.shape == (3, 10) and labels.shape == (3,)
    direct = mosel.infer_job(MODEL, [{m: batch[m][i] for m in batch} for i in range(3)], budget_ms=20000,
                             allowed=["audio", "video"])
    assert np.allclose(scores, [d.scores for d in direct.results], atol=1e-5)
    assert list(labels) == [d.label for d in direct.results]
    response = r.get_response()
    assert response["id"] == "t1" and response["model_name"] == MODEL
    params = response["parameters"]
    assert params["configurations"] == "audio+video,audio+video,audio+video"
    assert params["modalities_used"] == "audio,video" and params["degraded"] is False
    assert params["expected_accuracy"] == pytest.approx(direct.expected_accuracy)


def test_tritonclient_http_errors(client, samples):
    batch = stack_rows(samples[:2])

    def status(**kwargs):
        with pytest.raises(InferenceServerException) as info:
            client.infer(**kwargs)
        return info.value.status(), info.value.message()

    assert status(model_name="no-such-model", inputs=inputs_of(batch))[0] == "404"
    code, message = status(model_name=MODEL, inputs=inputs_of(batch), parameters={"min_accuracy": 0.99999})
    assert code == "400" and "parameters[min_accuracy]" in message
    assert status(model_name=MODEL, inputs=inputs_of(batch), timeout=1)[0] == "504"
    code, message = status(model_name=MODEL, inputs=inputs_of({**batch, "video": batch["video"][:, :, :5]}))
    assert code == "400" and "inputs[video].shape" in message
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert stats["execution_count"] >= 1 and stats["inference_stats"]["fail"]["count"] >= 2


# ---- plain REST (urllib) ----------------------------------------------------------------------
def test_rest_health_metadata_and_config(front):
    base = front.http_url
    assert call(f"{base}/v2/health/live")[0] == 200
    assert call(f"{base}/v2/health/ready")[0] == 200
    status, _, body = call(f"{base}/v2")
    assert status == 200 and "mosel_modality_selection" in json.loads(body)["extensions"]
    status, _, body = call(f"{base}/v2/models/{MODEL}")
    assert status == 200 and [i["name"] for i in json.loads(body)["inputs"]] == ["audio", "image", "video"]
    assert json.loads(call(f"{base}/v2/models/{MODEL}/versions/1")[2]) == json.loads(body)
    assert call(f"{base}/v2/models/{MODEL}/ready")[0] == 200
    status, _, body = call(f"{base}/v2/models/{MODEL}/config")
    assert status == 200 and json.loads(body)["output"][0] == {"name": "scores", "data_type": "TYPE_FP32", "dims": [10]}
    for path, expected in [("/v2/models/no-such-model", 404), ("/v2/models/no-such-model/ready", 404),
                           (f"/v2/models/{MODEL}/versions/2/config", 404), ("/v1/models", 404),
                           (f"/v2/models/{MODEL}/infer", 405), (f"/v2/models/{MODEL}/bogus", 404)]:
        status, headers, body = call(base + path)
        assert status == expected, path
        assert headers["Content-Type"] == "application/json" and json.loads(body)["error"], path


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_rest_infer_with_json_tensors(front, mosel, samples, nested):
    batch = stack_rows(samples[:2])
    status, headers, body = call(f"{front.http_url}/v2/models/{MODEL}/infer", "POST",
                                 infer_json(batch, {"timeout": LONG_US, "allowed_modalities": "image,video"}, nested),
                                 {"Content-Type": "application/json"})
    assert status == 200, body
    assert headers["Content-Type"] == "application/json" and HEADER_LENGTH not in headers
    doc = json.loads(body)
    assert doc["id"] == "h1" and doc["model_name"] == MODEL and doc["model_version"] == "1"
    out = {o["name"]: o for o in doc["outputs"]}
    assert out["scores"]["datatype"] == "FP32" and out["scores"]["shape"] == [2, 10]
    assert out["label"]["datatype"] == "INT64" and out["label"]["shape"] == [2]
    direct = mosel.infer_job(MODEL, [{m: batch[m][i] for m in batch} for i in range(2)], budget_ms=20000,
                             allowed=["image", "video"])
    assert np.allclose(np.reshape(out["scores"]["data"], (2, 10)), [d.scores for d in direct.results], atol=1e-5)
    assert out["label"]["data"] == [d.label for d in direct.results]
    assert doc["parameters"]["strategy"] == "image+video=2"


def test_rest_infer_with_binary_tensors_and_gzip(front, samples):
    batch = stack_rows(samples[:2])
    head = {"inputs": [{"name": n, "datatype": DATATYPES[n], "shape": list(a.shape),
                        "parameters": {"binary_data_size": a.nbytes}} for n, a in batch.items()],
            "parameters": {"timeout": LONG_US, "binary_data_output": True}}
    header = json.dumps(head).encode()
    body = header + b"".join(a.tobytes() for a in batch.values())
    status, headers, answer = call(f"{front.http_url}/v2/models/{MODEL}/infer", "POST", gzip.compress(body),
                                   {HEADER_LENGTH: str(len(header)), "Content-Encoding": "gzip",
                                    "Content-Type": "application/octet-stream"})
    assert status == 200, answer
    n = int(headers[HEADER_LENGTH])
    doc = json.loads(answer[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
    assert [o["name"] for o in doc["outputs"]] == ["scores", "label"] and sizes == [2 * 10 * 4, 2 * 8]
    assert len(answer) == n + sum(sizes)
    scores = np.frombuffer(answer[n:n + sizes[0]], "<f4").reshape(2, 10)
    labels = np.frombuffer(answer[n + sizes[0]:], "<i8")
    assert (labels == scores.argmax(axis=1)).all()
    # a binary size that does not match the tensor is refused, naming it
    head["inputs"][0]["parameters"]["binary_data_size"] -= 4
    header = json.dumps(head).encode()
    status, _, answer = call(f"{front.http_url}/v2/models/{MODEL}/infer", "POST", header + body[len(header) + 4:],
                             {HEADER_LENGTH: str(len(header))})
    assert status == 400 and "inputs[audio]" in json.loads(answer)["error"]


@pytest.mark.parametrize("case", ["bad json", "bad shape", "size mismatch", "unknown model", "floor too high",
                                  "tiny timeout", "unknown input", "bad parameter", "ragged data"])
def test_rest_errors(front, samples, case):
    batch = stack_rows(samples[:2])
    url = f"{front.http_url}/v2/models/{MODEL}/infer"
    short = json.loads(infer_json(batch, nested=False))
    short["inputs"][1]["data"] = short["inputs"][1]["data"][:-1]
    ragged = json.loads(infer_json(batch))
    ragged["inputs"][1]["data"][0] = ragged["inputs"][1]["data"][0][:-1]
    smell = json.loads(infer_json(batch))
    smell["inputs"].append({"name": "smell", "datatype": "FP32", "shape": [2, 1], "data": [0.0, 1.0]})
    cases = {
        "bad json": (url, b"{not json", 400, "body"),
        "bad shape": (url, infer_json({**batch, "image": batch["image"][:, :20]}), 400, "inputs[image].shape"),
        "size mismatch": (url, json.dumps(short).encode(), 400, "inputs[image].data"),
        "unknown model": (f"{front.http_url}/v2/models/no-such-model/infer", infer_json(batch), 404, "no-such-model"),
        "floor too high": (url, infer_json(batch, {"min_accuracy": 0.99999, "timeout": LONG_US}), 400,
                           "parameters[min_accuracy]"),
        "tiny timeout": (url, infer_json(batch, {"timeout": 1}), 504, "deadline"),
        "unknown input": (url, json.dumps(smell).encode(), 404, "inputs[smell]"),
        "bad parameter": (url, infer_json(batch, {"timeout": "soon"}), 400, "parameters[timeout]"),
        "ragged data": (url, json.dumps(ragged).encode(), 400, "inputs[image].data"),
    }
    target, body, expected, needle = cases[case]
    status, _, answer = call(target, "POST", body, {"Content-Type": "application/json"})
    assert status == expected, answer
    assert needle in json.loads(answer)["error"]


# ---- the HTTP front in this process ---------------------------------------------------------------
def test_start_http_serves_and_stops_cleanly(kserve_stack, samples):
    backend = StubBackend.connect(kserve_stack.endpoint("selection"), models=[MODEL])
    front = start_http(backend, port=0)
    try:
        assert front.url.startswith("http://127.0.0.1:")
        status, _, body = call(f"{front.url}/v2/models/{MODEL}/infer", "POST",
                               infer_json(stack_rows(samples[:1]), {"timeout": LONG_US}))
        assert status == 200 and json.loads(body)["outputs"][0]["shape"] == [1, 10]
        stats = json.loads(call(f"{front.url}/v2/models/stats")[2])["model_stats"]
        assert [(s["name"], s["execution_count"]) for s in stats] == [(MODEL, 1)]
        idle = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)  # a keep-alive connection
        idle.request("GET", "/v2/health/live")
        assert idle.getresponse().read() == b""
        started = time.monotonic()
        front.stop(grace_s=5.0)
        assert time.monotonic() - started < 5.0, "stop waited for an idle keep-alive connection"
        assert not front._thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", front.port), timeout=2).close()
        with pytest.raises((http.client.HTTPException, OSError)):
            idle.request("GET", "/v2/health/live")
            idle.getresponse()
        idle.close()
    finally:
        front.stop()
        backend.close()


def test_http_front_without_a_selection_service_is_live_not_ready():
    backend = StubBackend.connect("127.0.0.1:9")  # nothing listens there
    with start_http(backend, port=0) as front:
        assert call(f"{front.url}/v2/health/live")[0] == 200
        assert call(f"{front.url}/v2/health/ready")[0] == 503
        status, _, body = call(f"{front.url}/v2/models/{MODEL}/infer", "POST", b"{}")
        assert status == 503 and json.loads(body)["error"]
    backend.close()
