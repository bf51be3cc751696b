"""Bounded input (issue #15, point 4), over loopback against the real services:
non-finite floats and over-long ids are refused naming the field, on mosel.v1 and on the
KServe v2 fronts (gRPC and HTTP); a stream whose client never reads its answers holds at
most a bounded number of them on the server.

The KServe gRPC calls go through tritonclient's own generated messages: this process must
not load mosel's copy of the `inference` messages (see tests/frontends/conftest.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from mosel.client import MoselClient, infer_request, job_request
from mosel.engine.servicer import STREAM_MAX_OUTSTANDING
from mosel.engine.settings import SelectionSettings
from mosel.errors import MAX_STRING_CHARS
from mosel.frontends.conversions import MAX_REQUEST_ID_CHARS
from mosel.frontends.core import STREAM_MAX_OUTSTANDING as KSERVE_STREAM_MAX_OUTSTANDING
from mosel.launch.stack import Stack, bring_up, free_port
from mosel.models.registry import get_pack
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import encoder_pb2, encoder_pb2_grpc, selection_pb2, selection_pb2_grpc
from mosel.server.channels import channel_options, make_channel

MODEL = "av-digits"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
# A client that never reads still lets a few replies through: those that fit its receive
# window (made small below) and the socket. Far fewer than the requests the tests send.
SLACK = 32


@pytest.fixture(scope="module")
def stack(tiny_model_home):
    s = Stack(home=tiny_model_home, model=MODEL, selection=SelectionSettings(http_port=free_port()))
    bring_up(s, progress=False, say=lambda *_: None)
    yield s
    codes = s.stop()
    assert all(c == 0 for c in codes.values()), f"a service did not exit cleanly: {codes}"


@pytest.fixture(scope="module")
def client(stack):
    with MoselClient(stack.endpoint("selection"), timeout_s=60) as c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def http_url(stack, client):
    return f"http://127.0.0.1:{stack.selection.http_port}"


@pytest.fixture(scope="module")
def samples():
    return get_pack(MODEL).test_samples(limit=8)


def _refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def _poisoned(inputs: dict, value: float) -> dict:
    audio = inputs["audio"].copy()
    audio[3, 5] = value
    return {**inputs, "audio": audio}


def _post(url: str, doc: dict) -> tuple[int, dict]:
    body = json.dumps(doc).encode()  # a float NaN/inf is written as the bare token NaN / Infinity
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _kserve_doc(inputs: dict, request_id: str = "k") -> dict:
    return {"id": request_id, "parameters": {"timeout": 60_000_000},
            "inputs": [{"name": m, "datatype": "FP32" if a.dtype == np.float32 else "UINT8", "shape": [1, *a.shape],
                        "data": a.reshape(-1).tolist()} for m, a in inputs.items()]}


# ---- NaN / inf --------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_refused_on_infer(client, samples, value):
    request = infer_request(MODEL, _poisoned(samples[0][0], value), "nan", budget_ms=30000)
    code, details = _refusal(lambda: client.stub.Infer(request, timeout=30))
    assert code == INVALID and "inputs[audio]" in details and "NaN or infinite" in details, details


def test_non_finite_job_item_is_named(client, samples):
    items = [samples[0][0], samples[1][0], _poisoned(samples[2][0], float("inf"))]
    code, details = _refusal(lambda: client.infer_job(MODEL, items, budget_ms=30000))
    assert code == INVALID and "items[2].inputs[audio]" in details, details


def test_non_finite_stream_message_gets_an_error_entry(client, samples):
    messages = [selection_pb2.StreamRequest(request=infer_request(MODEL, samples[0][0], "ok", budget_ms=30000)),
                selection_pb2.StreamRequest(request=infer_request(MODEL, _poisoned(samples[1][0], float("nan")),
                                                                  "bad", budget_ms=30000))]
    answers = list(client.stream(messages))
    errors = [a.error for a in answers if a.WhichOneof("kind") == "error"]
    assert [a.response.id for a in answers if a.WhichOneof("kind") == "response"] == ["ok"]
    assert len(errors) == 1 and errors[0].id == "bad" and errors[0].code == INVALID.value[0]
    assert "inputs[audio]" in errors[0].message


def test_finite_input_is_still_served(client, samples):
    r = client.infer(MODEL, samples[0][0], request_id="fine", budget_ms=30000)
    assert r.id == "fine" and np.isfinite(r.scores).all()


def test_encoder_refuses_non_finite_items(stack, samples):
    items = [wire.encode(samples[0][0]["audio"]), wire.encode(_poisoned(samples[1][0], float("nan"))["audio"])]
    with make_channel(stack.endpoint("encoder_audio")) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        code, details = _refusal(lambda: stub.Encode(
            encoder_pb2.EncodeRequest(model=MODEL, modality="audio", items=items), timeout=30))
    assert code == INVALID and "items[1]" in details and "NaN" in details, details


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_kserve_http_json_refuses_non_finite(http_url, samples, value):
    status, body = _post(f"{http_url}/v2/models/{MODEL}/infer", _kserve_doc(_poisoned(samples[0][0], value)))
    assert status == 400 and "inputs[audio]" in body["error"] and "NaN or infinite" in body["error"], body
    status, body = _post(f"{http_url}/v2/models/{MODEL}/infer", _kserve_doc(samples[0][0]))
    assert status == 200, body


def test_kserve_http_binary_refuses_non_finite(http_url, samples):
    inputs = _poisoned(samples[0][0], float("-inf"))
    doc = _kserve_doc(inputs)
    raws = []
    for t in doc["inputs"]:
        raw = np.ascontiguousarray(inputs[t["name"]]).tobytes()
        del t["data"]
        t["parameters"] = {"binary_data_size": len(raw)}
        raws.append(raw)
    head = json.dumps(doc).encode()
    request = urllib.request.Request(f"{http_url}/v2/models/{MODEL}/infer", data=head + b"".join(raws), method="POST",
                                     headers={"Inference-Header-Content-Length": str(len(head)),
                                              "Content-Type": "application/octet-stream"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 400 and "inputs[audio]" in json.loads(info.value.read())["error"]


def _triton_request(inputs: dict, request_id: str = "t", model: str = MODEL):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    request.parameters["timeout"].int64_param = 60_000_000
    for name, a in inputs.items():
        request.inputs.add(name=name, datatype="FP32" if a.dtype == np.float32 else "UINT8", shape=[1, *a.shape])
        request.raw_input_contents.append(np.ascontiguousarray(a).tobytes())
    return request


@pytest.fixture(scope="module")
def triton_stub(stack, client):
    from tritonclient.grpc import service_pb2_grpc

    channel = grpc.insecure_channel(stack.endpoint("selection"), options=channel_options())
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def test_kserve_grpc_refuses_non_finite(triton_stub, samples):
    code, details = _refusal(lambda: triton_stub.ModelInfer(_triton_request(_poisoned(samples[0][0], float("nan"))),
                                                            timeout=60))
    assert code == INVALID and "inputs[audio]" in details, details
    assert triton_stub.ModelInfer(_triton_request(samples[0][0]), timeout=60).id == "t"


# ---- long ids and names ------------------------------------------------------------------------
LONG = "x" * (MAX_STRING_CHARS + 1)


def _long_cases(inputs):
    long_key = infer_request(MODEL, inputs, budget_ms=30000)
    long_key.inputs[LONG].CopyFrom(wire.encode(inputs["audio"]))
    return {
        "request id": (lambda s: s.Infer(infer_request(MODEL, inputs, LONG, budget_ms=30000), timeout=30), "id"),
        "model name": (lambda s: s.Infer(infer_request(LONG, inputs, "r", budget_ms=30000), timeout=30), "model"),
        "modality name": (lambda s: s.Infer(long_key, timeout=30), "inputs.key"),
        "allowed modality": (lambda s: s.Infer(infer_request(MODEL, inputs, "r", budget_ms=30000,
                                                             allowed=["audio", LONG]), timeout=30),
                             "slo.allowed_modalities[1]"),
        "job id": (lambda s: s.InferJob(job_request(MODEL, [inputs], LONG, item_ids=["a"], budget_ms=30000),
                                        timeout=30), "job_id"),
        "item id": (lambda s: s.InferJob(job_request(MODEL, [inputs, inputs], "j", item_ids=["a", LONG],
                                                     budget_ms=30000), timeout=30), "items[1].id"),
        "metadata model": (lambda s: s.GetModelMetadata(selection_pb2.ModelMetadataRequest(model=LONG), timeout=30),
                           "model"),
    }


@pytest.mark.parametrize("case", list(_long_cases(get_pack(MODEL).test_samples(limit=1)[0][0])))
def test_long_ids_are_refused_and_not_echoed(client, samples, case):
    call, field = _long_cases(samples[0][0])[case]
    code, details = _refusal(lambda: call(client.stub))
    assert code == INVALID and details.startswith(f"{field}: ") and "exceed the limit of 256" in details, details
    assert LONG not in details


def test_ids_at_the_limit_are_served(client, samples):
    at_limit = "y" * MAX_STRING_CHARS
    assert client.infer(MODEL, samples[0][0], request_id=at_limit, budget_ms=30000).id == at_limit


def test_long_stream_message_id_gets_an_error_entry_without_it(client, samples):
    messages = [selection_pb2.StreamRequest(request=infer_request(MODEL, samples[0][0], LONG, budget_ms=30000))]
    answers = list(client.stream(messages))
    assert len(answers) == 1 and answers[0].WhichOneof("kind") == "error"
    assert answers[0].error.id == "" and answers[0].error.code == INVALID.value[0]
    assert answers[0].error.message.startswith("id: ")


def test_kserve_http_refuses_long_ids_and_names(http_url, samples):
    url = f"{http_url}/v2/models/{MODEL}/infer"
    status, body = _post(url, _kserve_doc(samples[0][0], request_id="z" * (MAX_REQUEST_ID_CHARS + 1)))
    assert status == 400 and body["error"].startswith("id: ") and "z" * 100 not in body["error"], body
    doc = _kserve_doc(samples[0][0])
    doc["inputs"][0]["name"] = LONG
    status, body = _post(url, doc)
    assert status == 400 and body["error"].startswith("inputs[0].name: ") and LONG not in body["error"], body
    status, body = _post(f"{http_url}/v2/models/{LONG}/infer", _kserve_doc(samples[0][0]))
    assert status == 400 and body["error"].startswith("model_name: ") and LONG not in body["error"], body
    # the longest id a KServe call may carry is served: its rows' item ids fit mosel.v1's limit
    status, body = _post(url, _kserve_doc(samples[0][0], request_id="z" * MAX_REQUEST_ID_CHARS))
    assert status == 200, body


def test_kserve_grpc_refuses_long_ids(triton_stub, samples):
    code, details = _refusal(lambda: triton_stub.ModelInfer(_triton_request(samples[0][0], request_id=LONG),
                                                            timeout=60))
    assert code == INVALID and details.startswith("id: ") and LONG not in details, details
    code, details = _refusal(lambda: triton_stub.ModelInfer(_triton_request(samples[0][0], model=LONG), timeout=60))
    assert code == INVALID and details.startswith("model_name: "), details


# ---- streams whose client never reads ------------------------------------------------------------
# The client's receive window is kept small, so only a few answers can hide in its transport:
# what the server holds back is then what the bound is about.
NOT_READING_OPTIONS = [*channel_options(), ("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]


def _received(client) -> int:
    return client.stats(MODEL).requests_received


def _wait_until_it_stops_reading(client, baseline: int, at_least: int, timeout_s: float = 120.0) -> int:
    """Requests the server has read since `baseline`, once that count has reached `at_least`
    and then stopped growing (polled; the assertion made on it is a hard bound, not a time)."""
    deadline = time.monotonic() + timeout_s
    last, stable = -1, 0
    while time.monotonic() < deadline:
        now = _received(client) - baseline
        stable = stable + 1 if now == last and now >= at_least else 0
        if stable >= 4:
            return now
        last = now
        time.sleep(0.5)
    return _received(client) - baseline


def _drain(call, expected: int) -> list:
    answers = []
    for answer in call:
        answers.append(answer)
        if len(answers) == expected:
            break
    return answers


def test_stream_that_is_never_read_is_held_back(client, stack, samples):
    bound = STREAM_MAX_OUTSTANDING
    total = 3 * bound + SLACK

    def messages():
        for i in range(total):
            yield selection_pb2.StreamRequest(request=infer_request(MODEL, samples[i % len(samples)][0], f"m{i}",
                                                                    budget_ms=60000))

    baseline = _received(client)
    with grpc.insecure_channel(stack.endpoint("selection"), options=NOT_READING_OPTIONS) as channel:
        call = selection_pb2_grpc.SelectionServiceStub(channel).InferStream(messages(), timeout=300)
        try:
            read = _wait_until_it_stops_reading(client, baseline, bound)
            assert bound <= read <= bound + SLACK, f"the server read {read} requests of a stream nobody reads"
            # Reading again lets the server go on: every request is answered, in the end.
            answers = _drain(call, total)
        finally:
            call.cancel()
    assert len(answers) == total
    assert sorted(a.response.id for a in answers) == sorted(f"m{i}" for i in range(total))


def test_kserve_stream_that_is_never_read_is_held_back(client, stack, samples):
    from tritonclient.grpc import service_pb2_grpc

    bound = KSERVE_STREAM_MAX_OUTSTANDING
    total = 3 * bound + SLACK
    requests = [_triton_request(samples[i % len(samples)][0], request_id=f"k{i}") for i in range(total)]
    baseline = _received(client)
    with grpc.insecure_channel(stack.endpoint("selection"), options=NOT_READING_OPTIONS) as channel:
        call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(requests), timeout=300)
        try:
            read = _wait_until_it_stops_reading(client, baseline, bound)
            assert bound <= read <= bound + SLACK, f"the server read {read} requests of a stream nobody reads"
            answers = _drain(call, total)
        finally:
            call.cancel()
    assert len(answers) == total and not any(a.error_message for a in answers)
    assert sorted(a.infer_response.id for a in answers) == sorted(f"k{i}" for i in range(total))


def test_service_answers_after_the_streams(client, samples):
    assert client.infer(MODEL, samples[0][0], request_id="after", budget_ms=30000).id == "after"
