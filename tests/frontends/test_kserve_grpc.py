"""KServe v2 gRPC front, driven by the real tritonclient.grpc against a live stack.

Every test runs against both fronts (conftest: `gateway` forwards to the selection service
over mosel.v1, `inprocess` wraps the selection service's own SelectionServicer)."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from mosel.client import MoselClient
from tests.frontends.conftest import MODEL, stack_rows

DATATYPES = {"audio": "FP32", "image": "UINT8", "video": "UINT8"}
LONG_US = 20_000_000  # a 20 s budget: no test here is about deadlines unless it says so


@pytest.fixture
def client(front):
    c = tg.InferenceServerClient(url=front.grpc_address)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def mosel(kserve_stack):
    with MoselClient(kserve_stack.endpoint("selection"), timeout_s=30) as c:
        c.wait_ready()
        yield c


def inputs_of(batch: dict[str, np.ndarray]) -> list[tg.InferInput]:
    out = []
    for name, array in batch.items():
        t = tg.InferInput(name, list(array.shape), DATATYPES[name])
        t.set_data_from_numpy(array)
        out.append(t)
    return out


def params_of(result) -> dict:
    """The response parameters as plain values."""
    return {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in result.get_response().parameters.items()}


def status_of(call) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_health_and_readiness(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, model_version="1")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(MODEL, model_version="7")


def test_server_metadata_names_the_modality_selection_extension(client):
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "mosel"
    assert "mosel_modality_selection" in meta["extensions"]
    assert meta["version"]


def test_model_metadata_has_one_input_per_modality(client):
    meta = client.get_model_metadata(MODEL)
    assert meta.name == MODEL and list(meta.versions) == ["1"]
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        ("audio", "FP32", [-1, -1, 32]), ("image", "UINT8", [-1, 28, 28]), ("video", "UINT8", [-1, -1, 28, 28])]
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
        ("scores", "FP32", [-1, 10]), ("label", "INT64", [-1])]
    status, message = status_of(lambda: client.get_model_metadata("no-such-model"))
    assert status == "StatusCode.NOT_FOUND" and "no-such-model" in message


def test_model_config_is_tritons(client):
    config = client.get_model_config(MODEL).config
    assert config.name == MODEL and config.max_batch_size == 32
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in config.input] == [
        ("audio", tg.model_config_pb2.TYPE_FP32, [-1, 32], True),
        ("image", tg.model_config_pb2.TYPE_UINT8, [28, 28], True),
        ("video", tg.model_config_pb2.TYPE_UINT8, [-1, 28, 28], True)]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("scores", tg.model_config_pb2.TYPE_FP32, [10]), ("label", tg.model_config_pb2.TYPE_INT64, [1])]
    assert config.HasField("dynamic_batching")
    assert config.parameters["policy"].string_value == "agnostic"
    assert "audio+image+video=" in config.parameters["configurations"].string_value


def test_infer_is_one_job_with_the_scores_of_mosel_v1(client, mosel, samples):
    batch = stack_rows(samples[:4])
    result = client.infer(MODEL, inputs_of(batch), request_id="k1", timeout=LONG_US,
                          parameters={"min_accuracy": 0.5})
    scores, labels = result.as_numpy("scores"), result.as_numpy("label")
    assert scores.shape == (4, 10) and scores.dtype == np.float32
    assert labels.shape == (4,) and labels.dtype == np.int64
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert (labels == scores.argmax(axis=1)).all()
    # the same rows as a mosel.v1 job give the same answer
    direct = mosel.infer_job(MODEL, [{m: batch[m][i] for m in batch} for i in range(4)], budget_ms=20000)
    assert np.allclose(scores, np.array([r.scores for r in direct.results]), atol=1e-5)
    assert list(labels) == [r.label for r in direct.results]
    response = result.get_response()
    assert response.id == "k1" and response.model_name == MODEL
    params = params_of(result)
    assert params["configurations"] == ",".join(["audio+image+video"] * 4)
    assert params["strategy"] == "audio+image+video=4"
    assert params["modalities_used"] == "audio,image,video"
    assert params["degraded"] is False and params["policy"] == "agnostic"
    assert params["expected_accuracy"] == pytest.approx(direct.expected_accuracy)
    assert params["expected_accuracy"] >= 0.5


def test_allowed_required_and_absent_modalities(client, samples):
    batch = stack_rows(samples[:3])
    r = client.infer(MODEL, inputs_of(batch), timeout=LONG_US, parameters={"allowed_modalities": "audio,image"})
    assert params_of(r)["configurations"] == "audio+image,audio+image,audio+image"
    assert params_of(r)["modalities_used"] == "audio,image"
    # an input left out is a modality not provided
    r = client.infer(MODEL, inputs_of({"video": batch["video"]}), timeout=LONG_US)
    assert params_of(r)["strategy"] == "video=3"
    assert r.as_numpy("scores").shape == (3, 10)
    r = client.infer(MODEL, inputs_of(batch), timeout=LONG_US,
                     parameters={"allowed_modalities": "image,video", "required_modalities": "video"})
    assert set(params_of(r)["configurations"].split(",")) <= {"video", "image+video"}


def test_without_timeout_the_server_default_budget_applies(client, samples):
    # no "timeout" parameter and no client deadline: the selection service's default budget (1 s)
    r = client.infer(MODEL, inputs_of({"image": stack_rows(samples[:1])["image"]}))
    assert params_of(r)["configurations"] == "image"
    assert r.as_numpy("label").shape == (1,)


def test_requested_outputs_come_in_the_order_asked(client, samples):
    batch = stack_rows(samples[:2])
    r = client.infer(MODEL, inputs_of(batch), outputs=[tg.InferRequestedOutput("label")], timeout=LONG_US)
    assert [o.name for o in r.get_response().outputs] == ["label"]
    assert r.as_numpy("scores") is None and r.as_numpy("label").shape == (2,)
    status, message = status_of(lambda: client.infer(MODEL, inputs_of(batch),
                                                     outputs=[tg.InferRequestedOutput("logits")]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "outputs[logits]" in message


def _bad_calls(batch):
    wrong_shape = {**batch, "image": batch["image"][:, :27]}
    wrong_dtype = inputs_of(batch)
    wrong_dtype[1] = tg.InferInput("image", list(batch["image"].shape), "FP32")
    wrong_dtype[1].set_data_from_numpy(batch["image"].astype(np.float32))
    rows_differ = {**batch, "video": batch["video"][:1]}
    extra = inputs_of(batch) + [tg.InferInput("smell", [2, 3], "FP32")]
    extra[-1].set_data_from_numpy(np.zeros((2, 3), np.float32))
    return {
        "unknown model": (dict(model_name="no-such-model", inputs=inputs_of(batch)), "NOT_FOUND", "no-such-model"),
        "unknown input": (dict(model_name=MODEL, inputs=extra), "NOT_FOUND", "inputs[smell]"),
        "floor above the best configuration": (dict(model_name=MODEL, inputs=inputs_of(batch), timeout=LONG_US,
                                                    parameters={"min_accuracy": 0.99999}),
                                               "INVALID_ARGUMENT", "parameters[min_accuracy]"),
        "floor above 1": (dict(model_name=MODEL, inputs=inputs_of(batch), parameters={"min_accuracy": 1.5}),
                          "INVALID_ARGUMENT", "parameters[min_accuracy]"),
        "tiny timeout": (dict(model_name=MODEL, inputs=inputs_of(batch), timeout=1), "DEADLINE_EXCEEDED", "deadline"),
        "bad shape": (dict(model_name=MODEL, inputs=inputs_of(wrong_shape)), "INVALID_ARGUMENT", "inputs[image].shape"),
        "bad datatype": (dict(model_name=MODEL, inputs=wrong_dtype), "INVALID_ARGUMENT", "inputs[image].datatype"),
        "rows differ": (dict(model_name=MODEL, inputs=inputs_of(rows_differ)), "INVALID_ARGUMENT", "inputs[video].shape"),
        "unknown allowed modality": (dict(model_name=MODEL, inputs=inputs_of(batch),
                                          parameters={"allowed_modalities": "audio,smell"}), "NOT_FOUND", "smell"),
        "unknown version": (dict(model_name=MODEL, model_version="3", inputs=inputs_of(batch)),
                            "NOT_FOUND", "model_version"),
    }


ERROR_CASES = ["unknown model", "unknown input", "floor above the best configuration", "floor above 1", "tiny timeout",
               "bad shape", "bad datatype", "rows differ", "unknown allowed modality", "unknown version"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_carry_mosel_status_codes(client, samples, case):
    cases = _bad_calls(stack_rows(samples[:2]))
    assert sorted(cases) == sorted(ERROR_CASES)
    kwargs, code, needle = cases[case]
    status, message = status_of(lambda: client.infer(**kwargs))
    assert status == f"StatusCode.{code}", message
    assert needle in message


def _typed_request(batch, *edits) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=MODEL, id="typed")
    request.parameters["timeout"].int64_param = LONG_US
    for name, array in batch.items():
        t = request.inputs.add(name=name, datatype=DATATYPES[name], shape=list(array.shape))
        if name == "audio":
            t.contents.fp32_contents.extend(array.reshape(-1).tolist())
        else:
            t.contents.uint_contents.extend(array.reshape(-1).tolist())
    for edit in edits:
        edit(request)
    return request


def test_typed_contents_and_raw_contents_agree(front, client, samples):
    batch = stack_rows(samples[:2])
    raw = client.infer(MODEL, inputs_of(batch), timeout=LONG_US).as_numpy("scores")
    with grpc.insecure_channel(front.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(_typed_request(batch), timeout=30)
        assert response.id == "typed" and list(response.outputs[0].shape) == [2, 10]
        typed = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
        assert np.allclose(typed, raw, atol=1e-5)

        def refused(request, field):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert field in info.value.details()

        short = _typed_request(batch, lambda r: r.inputs[0].contents.fp32_contents.pop())
        refused(short, "inputs[audio].contents.fp32_contents")
        wrong_list = _typed_request(batch, lambda r: (r.inputs[1].contents.ClearField("uint_contents"),
                                                          r.inputs[1].contents.int_contents.extend([0] * (2 * 28 * 28))))
        refused(wrong_list, "inputs[image].contents")
        both = _typed_request(batch)
        both.raw_input_contents.extend([b"", b"", b""])
        refused(both, "contents")
        raw_request = _typed_request(batch)
        for t in raw_request.inputs:
            t.ClearField("contents")
        raw_request.raw_input_contents.extend([batch[t.name].tobytes() for t in raw_request.inputs])
        raw_request.raw_input_contents[0] = raw_request.raw_input_contents[0][:-3]
        refused(raw_request, "raw_input_contents[0]")
        del raw_request.raw_input_contents[2]
        refused(raw_request, "raw_input_contents")
        no_data = _typed_request(batch)
        no_data.inputs[2].ClearField("contents")
        refused(no_data, "inputs[video].contents")


def test_stream_answers_each_request_and_reports_errors_in_the_stream(client, samples):
    batch = stack_rows(samples[:2])
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=60)
    try:
        for i in range(3):
            client.async_stream_infer(MODEL, inputs_of(batch), request_id=f"s{i}", timeout=LONG_US)
        client.async_stream_infer(MODEL, inputs_of({**batch, "image": batch["image"][:, :5]}), request_id="bad",
                                  timeout=LONG_US)
        client.async_stream_infer("no-such-model", inputs_of(batch), request_id="nomodel")
        got = [answers.get(timeout=60) for _ in range(5)]
    finally:
        client.stop_stream()
    results = sorted(r.get_response().id for r, e in got if e is None)
    assert results == ["s0", "s1", "s2"]
    for r, e in got:
        if e is None:
            assert r.as_numpy("scores").shape == (2, 10)
    errors = sorted(e.message() for r, e in got if e is not None)
    assert len(errors) == 2
    assert errors[0].startswith("INVALID_ARGUMENT: ") and "inputs[image].shape" in errors[0]
    assert errors[1].startswith("NOT_FOUND: ") and "no-such-model" in errors[1]


def test_statistics_count_the_jobs_served_here(client, samples):
    before = client.get_inference_statistics(MODEL).model_stats[0]
    batch = stack_rows(samples[:3])
    client.infer(MODEL, inputs_of(batch), timeout=LONG_US)
    status_of(lambda: client.infer(MODEL, inputs_of(batch), parameters={"min_accuracy": 0.99999}))
    after = client.get_inference_statistics(MODEL).model_stats[0]
    assert after.name == MODEL and after.version == "1"
    assert after.execution_count == before.execution_count + 1
    assert after.inference_count == before.inference_count + 3
    assert after.inference_stats.success.count == before.inference_stats.success.count + 1
    assert after.inference_stats.success.ns > before.inference_stats.success.ns
    assert after.inference_stats.fail.count == before.inference_stats.fail.count + 1
    assert after.last_inference > 0
    assert any(b.batch_size == 3 for b in after.batch_stats)
    everything = client.get_inference_statistics().model_stats
    assert [s.name for s in everything] == [MODEL]
    status, _ = status_of(lambda: client.get_inference_statistics("no-such-model"))
    assert status == "StatusCode.NOT_FOUND"
