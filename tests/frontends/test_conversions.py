"""Unit tests of the fronts' pieces that need no running service: parameters -> SLO, tensors,
rows -> job items, outputs, the in-process backend and the HTTP status table."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from mosel.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable, grpc_errors
from mosel.frontends import conversions as conv
from mosel.frontends.backend import InProcessBackend, Refused, StubBackend, as_backend
from mosel.frontends.core import KServeCore
from mosel.frontends.kserve_http import http_status, infer_response_body, parse_infer_body
from mosel.protocol import tensors as wire
from mosel.protocol.v1 import selection_pb2, selection_pb2_grpc, tensor_pb2

VIEW = conv.ModelView(
    name="m", labels=("a", "b", "c"), max_batch_size=4, policy="agnostic",
    inputs=(conv.InputSpec("audio", "FP32", (-1, 2)), conv.InputSpec("image", "UINT8", (2, 2))),
    configurations=(("audio+image", 0.9), ("audio", 0.7), ("image", 0.6)))


def raises(exc_type, field, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert field in str(info.value), str(info.value)
    return info.value


# ---- parameters -> SLO ---------------------------------------------------------------------------
def test_slo_from_parameters():
    slo = conv.slo_from_parameters({"timeout": 250_000, "priority": 3, "min_accuracy": 0.8,
                                    "allowed_modalities": "audio, image", "required_modalities": "audio"})
    assert slo.budget_ms == 250.0 and slo.priority == 3 and slo.min_accuracy == pytest.approx(0.8)
    assert list(slo.allowed_modalities) == ["audio", "image"] and list(slo.required_modalities) == ["audio"]
    assert not conv.slo_from_parameters({}).HasField("budget_ms")
    assert not conv.slo_from_parameters({"timeout": 0}).HasField("budget_ms")  # 0 = the default budget
    assert list(conv.slo_from_parameters({"allowed_modalities": ["image"]}).allowed_modalities) == ["image"]
    assert conv.slo_from_parameters({"min_accuracy": 1}).min_accuracy == 1.0


@pytest.mark.parametrize("params, field", [
    ({"timeout": -1}, "parameters[timeout]"), ({"timeout": "1s"}, "parameters[timeout]"),
    ({"timeout": True}, "parameters[timeout]"), ({"priority": -2}, "parameters[priority]"),
    ({"priority": 2**40}, "parameters[priority]"), ({"min_accuracy": 1.2}, "parameters[min_accuracy]"),
    ({"min_accuracy": float("nan")}, "parameters[min_accuracy]"), ({"min_accuracy": "high"}, "parameters[min_accuracy]"),
    ({"allowed_modalities": 3}, "parameters[allowed_modalities]"),
])
def test_bad_parameters_are_refused_by_name(params, field):
    raises(InvalidArgument, field, conv.slo_from_parameters, params)


def test_refusals_are_worded_in_kserve_terms():
    assert conv.rename_slo_fields("slo.min_accuracy: 0.99 exceeds") == "parameters[min_accuracy]: 0.99 exceeds"
    assert conv.rename_slo_fields("slo.allowed_modalities: unknown") == "parameters[allowed_modalities]: unknown"


# ---- tensors ------------------------------------------------------------------------------------
def test_json_data_flat_nested_and_typed():
    nested = conv.array_from_json("FP32", (2, 2), [[1, 2], [3, 4.5]], "f")
    flat = conv.array_from_json("FP32", (2, 2), [1, 2, 3, 4.5], "f")
    assert nested.dtype == np.float32 and np.array_equal(nested, flat)
    assert conv.array_from_json("BOOL", (2,), [True, False], "f").tolist() == [True, False]
    assert conv.array_from_json("UINT8", (3,), [0, 7, 255], "f").dtype == np.uint8
    bf16 = conv.array_from_json("BF16", (1,), [1.0], "f")
    assert bf16.dtype == np.dtype("<u2") and int(bf16[0]) == 0x3F80
    raises(InvalidArgument, "f", conv.array_from_json, "FP32", (2, 2), [1, 2, 3], "f")
    raises(InvalidArgument, "f", conv.array_from_json, "FP32", (2, 2), [[1, 2], [3]], "f")
    raises(InvalidArgument, "f", conv.array_from_json, "UINT8", (1,), [256], "f")
    raises(InvalidArgument, "f", conv.array_from_json, "INT32", (1,), [1.5], "f")
    raises(InvalidArgument, "f", conv.array_from_json, "BOOL", (1,), [1], "f")
    raises(InvalidArgument, "f", conv.array_from_json, "FP32", (1,), ["x"], "f")
    typed = conv.array_from_typed("INT16", (2,), [-3, 4], "g")
    assert typed.dtype == np.int16 and typed.tolist() == [-3, 4]
    raises(InvalidArgument, "g", conv.array_from_typed, "INT8", (1,), [300], "g")
    raises(InvalidArgument, "g", conv.array_from_typed, "FP64", (3,), [1.0], "g")


def test_datatypes():
    raises(InvalidArgument, "x.datatype", conv.check_datatype, "BYTES", "x.datatype")
    raises(InvalidArgument, "x.datatype", conv.check_datatype, "FLOAT", "x.datatype")
    assert {conv.kserve_datatype(d) for d in wire.WIRE_DTYPES} == set(conv.KSERVE_TO_WIRE)
    assert all(conv.KSERVE_TO_TRITON_ENUM[k].startswith("TYPE_") for k in conv.KSERVE_TO_WIRE)


def _audio(rows=2, steps=3):
    return np.arange(rows * steps * 2, dtype=np.float32).reshape(rows, steps, 2)


def test_rows_become_the_items_of_one_job():
    audio = _audio()
    image = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    items = conv.job_items(VIEW, [conv.InputTensor("audio", "FP32", audio.shape, raw=audio.tobytes()),
                                  conv.InputTensor("image", "UINT8", image.shape, array=image)], "r")
    assert [it.id for it in items] == ["r-0", "r-1"]
    for i, it in enumerate(items):
        assert set(it.inputs) == {"audio", "image"}
        assert np.array_equal(wire.decode(it.inputs["audio"]), audio[i])
        assert np.array_equal(wire.decode(it.inputs["image"]), image[i])
    only = conv.job_items(VIEW, [conv.InputTensor("image", "UINT8", image.shape, array=image)], "")
    assert [set(it.inputs) for it in only] == [{"image"}, {"image"}] and only[0].id == ""


@pytest.mark.parametrize("tensors, exc, field", [
    ([], InvalidArgument, "inputs"),
    ([conv.InputTensor("smell", "FP32", (1, 1), array=np.zeros((1, 1), np.float32))], NotFound, "inputs[smell]"),
    ([conv.InputTensor("audio", "FP64", (2, 3, 2), array=np.zeros((2, 3, 2)))], InvalidArgument, "inputs[audio].datatype"),
    ([conv.InputTensor("audio", "FP32", (2, 3), array=np.zeros((2, 3), np.float32))], InvalidArgument, "inputs[audio].shape"),
    ([conv.InputTensor("image", "UINT8", (2, 2, 3), array=np.zeros((2, 2, 3), np.uint8))], InvalidArgument,
     "inputs[image].shape"),
    ([conv.InputTensor("image", "UINT8", (0, 2, 2), raw=b"")], InvalidArgument, "inputs[image].shape"),
    ([conv.InputTensor("image", "UINT8", (5, 2, 2), array=np.zeros((5, 2, 2), np.uint8))], InvalidArgument,
     "max_batch_size"),
    ([conv.InputTensor("audio", "FP32", (2, 3, 2), raw=b"\0" * 47, data_field="raw_input_contents[0]")],
     InvalidArgument, "raw_input_contents[0]"),
    ([conv.InputTensor("audio", "FP32", (2, 3, 2), array=_audio()),
      conv.InputTensor("image", "UINT8", (1, 2, 2), array=np.zeros((1, 2, 2), np.uint8))], InvalidArgument,
     "inputs[image].shape"),
    ([conv.InputTensor("image", "UINT8", (1, 2, 2), array=np.zeros((1, 2, 2), np.uint8)),
      conv.InputTensor("image", "UINT8", (1, 2, 2), array=np.zeros((1, 2, 2), np.uint8))], InvalidArgument,
     "more than once"),
])
def test_bad_inputs_are_refused_naming_the_field(tensors, exc, field):
    raises(exc, field, conv.job_items, VIEW, tensors, "r")


def _job_response(configs=("audio+image", "audio")) -> selection_pb2.InferJobResponse:
    results = [selection_pb2.InferResponse(id=f"r-{i}", scores=[0.2, 0.7, 0.1], label=1, configuration=c,
                                           modalities_used=c.split("+"), policy="mosel",
                                           degraded_reason="load" if i else "") for i, c in enumerate(configs)]
    return selection_pb2.InferJobResponse(
        results=results, expected_accuracy=0.8, degraded=True,
        strategy=[selection_pb2.ConfigurationCount(configuration=c, count=1) for c in configs])


def test_outputs_and_parameters_of_a_job():
    response = _job_response()
    scores, label = conv.outputs_of(response, 3, conv.check_requested_outputs([]))
    assert scores.name == "scores" and scores.shape == [2, 3] and scores.array.dtype == np.float32
    assert label.name == "label" and label.shape == [2] and label.raw() == np.array([1, 1], "<i8").tobytes()
    assert [o.name for o in conv.outputs_of(response, 3, ["label"])] == ["label"]
    raises(InvalidArgument, "outputs[x]", conv.check_requested_outputs, ["x"])
    assert conv.response_parameters(response, ["audio", "image"]) == {
        "configurations": "audio+image,audio", "strategy": "audio+image=1,audio=1", "modalities_used": "audio,image",
        "expected_accuracy": 0.8, "degraded": True, "degraded_reason": "load", "policy": "mosel"}


def test_model_view_metadata_and_config():
    meta = selection_pb2.ModelMetadata(
        name="m", labels=["a", "b"], max_job_size=8, policy="mosel",
        modalities=[selection_pb2.ModalityInfo(name="audio", spec=tensor_pb2.TensorSpec(dtype="float32", shape=[-1, 2]))],
        configurations=[selection_pb2.ConfigurationInfo(name="audio", accuracy=0.75)])
    view = conv.ModelView.from_metadata(meta)
    assert view.metadata_json()["inputs"] == [{"name": "audio", "datatype": "FP32", "shape": [-1, -1, 2]}]
    assert view.metadata_json()["outputs"][0] == {"name": "scores", "datatype": "FP32", "shape": [-1, 2]}
    config = view.config_json()
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["parameters"]["configurations"] == {"string_value": "audio=0.7500"}


# ---- HTTP bodies and statuses -----------------------------------------------------------------------
def test_binary_body_parsing():
    audio = _audio(1, 2)
    head = json.dumps({"id": "b", "inputs": [{"name": "audio", "datatype": "FP32", "shape": [1, 2, 2],
                                              "parameters": {"binary_data_size": 16}}],
                       "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}).encode()
    rid, params, inputs, outputs = parse_infer_body(head + audio.tobytes(), len(head))
    assert rid == "b" and params == {} and outputs == [("label", True)]
    assert bytes(inputs[0].raw) == audio.tobytes()
    raises(InvalidArgument, "binary bytes", parse_infer_body, head + audio.tobytes() + b"x", len(head))
    raises(InvalidArgument, "binary_data_size", parse_infer_body, head + audio.tobytes()[:8], len(head))
    raises(InvalidArgument, "Inference-Header-Content-Length", parse_infer_body, head, len(head) + 1)
    raises(InvalidArgument, "inputs", parse_infer_body, b'{"inputs": 3}', None)


def test_binary_and_json_outputs():
    response = _job_response()
    from mosel.frontends.core import InferOutcome

    outcome = InferOutcome("m", "x", conv.outputs_of(response, 3, ["scores", "label"]), {"degraded": True})
    body, n = infer_response_body(outcome, [("scores", False)], binary_default=True)
    doc = json.loads(body[:n])
    assert doc["outputs"][0]["data"] == pytest.approx([0.2, 0.7, 0.1] * 2)
    assert doc["outputs"][1]["parameters"]["binary_data_size"] == 16 and body[n:] == np.array([1, 1], "<i8").tobytes()
    body, n = infer_response_body(outcome, [], binary_default=False)
    assert n is None and json.loads(body)["outputs"][1]["data"] == [1, 1]


@pytest.mark.parametrize("exc, status", [
    (InvalidArgument("f", "bad"), 400), (NotFound("gone"), 404), (ResourceExhausted("full"), 429),
    (Unavailable("down"), 503), (Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), 504),
    (Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"), 429), (RuntimeError("boom"), 500),
])
def test_http_status_of_each_code(exc, status):
    assert http_status(exc)[0] == status


# ---- the in-process backend ------------------------------------------------------------------------
class FakeSelection(selection_pb2_grpc.SelectionServiceServicer):
    """A selection servicer with mosel's error handling, answering from canned data."""

    def __init__(self):
        self.dispatchers = {"m": None}
        self.remaining = []

    @grpc_errors
    def GetModelMetadata(self, request, context):
        if request.model != "m":
            raise NotFound(f"model: unknown model {request.model!r}")
        return selection_pb2.ModelMetadata(
            name="m", labels=["a", "b", "c"], max_job_size=4, policy="agnostic",
            modalities=[selection_pb2.ModalityInfo(name="audio", spec=tensor_pb2.TensorSpec(dtype="float32", shape=[-1, 2])),
                        selection_pb2.ModalityInfo(name="image", spec=tensor_pb2.TensorSpec(dtype="uint8", shape=[2, 2]))])

    @grpc_errors
    def InferJob(self, request, context):
        self.remaining.append(context.time_remaining())
        if request.slo.min_accuracy > 0.95:
            raise InvalidArgument("slo.min_accuracy", "0.99 exceeds the best accuracy")
        return _job_response(["audio"] * len(request.items))


def test_core_over_an_in_process_servicer():
    fake = FakeSelection()
    core = KServeCore(fake, version="9")
    assert isinstance(core.backend, InProcessBackend)
    assert core.ready() and core.model_ready("m") and not core.model_ready("x")
    assert core.server_metadata() == {"name": "mosel", "version": "9", "extensions": [
        "model_configuration", "statistics", "binary_tensor_data", "parameters", "mosel_modality_selection"]}
    audio = _audio(2, 3)
    inputs = [conv.InputTensor("audio", "FP32", audio.shape, raw=audio.tobytes())]
    outcome = core.infer("m", "", "j", inputs, {"timeout": 2_000_000}, rpc_remaining_s=1.0)
    assert outcome.parameters["configurations"] == "audio,audio" and outcome.outputs[0].shape == [2, 3]
    assert 0.5 < fake.remaining[-1] <= 1.0  # the caller's deadline binds over the 2 s budget
    err = raises(Refused, "parameters[min_accuracy]", core.infer, "m", "", "j", inputs, {"min_accuracy": 0.99})
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    raises(NotFound, "model_name", core.infer, "x", "", "j", inputs, {})
    raises(NotFound, "model_version", core.view, "m", "2")
    stats = core.statistics()["model_stats"]
    assert [(s["name"], s["inference_count"], s["execution_count"]) for s in stats] == [("m", 2, 1)]
    assert stats[0]["inference_stats"]["fail"]["count"] == 1
    core.set_ready(False)
    assert not core.ready() and core.live()


def test_as_backend_tells_servicers_from_stubs():
    channel = grpc.insecure_channel("127.0.0.1:9")
    try:
        assert isinstance(as_backend(selection_pb2_grpc.SelectionServiceStub(channel)), StubBackend)
        assert isinstance(as_backend(FakeSelection()), InProcessBackend)
        with pytest.raises(TypeError):
            as_backend(object())
    finally:
        channel.close()
