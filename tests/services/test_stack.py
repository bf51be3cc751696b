"""Integration: the real services as subprocesses on loopback ports, driven over gRPC."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mosel.client import MoselClient, infer_request, job_request
from mosel.models.registry import get_pack
from mosel.protocol import tensors as wire
from mosel.server.channels import make_channel
from mosel.launch.stack import Stack, bring_up
from mosel.protocol.v1 import selection_pb2

MODEL = "av-digits"


@pytest.fixture(scope="module")
def stack(tiny_model_home):
    s = Stack(home=tiny_model_home, model=MODEL)
    bring_up(s, progress=False, say=lambda *_: None)
    yield s
    codes = s.stop()
    assert all(c == 0 for c in codes.values()), f"a service did not exit cleanly: {codes}"


@pytest.fixture(scope="module")
def client(stack):
    with MoselClient(stack.endpoint("selection"), timeout_s=30) as c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def samples():
    return get_pack(MODEL).test_samples(limit=40)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_every_service_reports_serving(stack):
    for name, svc in stack.services.items():
        with make_channel(svc.address) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name


def _reflected_services(address: str) -> set[str]:
    with make_channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        return {s.name for r in responses for s in r.list_services_response.service}


def test_reflection_lists_the_services(stack):
    assert "mosel.v1.SelectionService" in _reflected_services(stack.endpoint("selection"))
    assert "mosel.v1.ProfileStoreService" in _reflected_services(stack.endpoint("profile_store"))
    assert "mosel.v1.EncoderService" in _reflected_services(stack.endpoint("encoder_video"))
    assert "grpc.health.v1.Health" in _reflected_services(stack.endpoint("selection"))


def test_metadata_lists_modalities_and_seven_configurations(client):
    meta = client.metadata(MODEL)
    assert [m.name for m in meta.modalities] == ["audio", "image", "video"]
    assert len(meta.configurations) == 7
    assert all(0.0 < c.accuracy <= 1.0 and c.samples > 0 for c in meta.configurations)
    assert meta.accuracy_profile_version >= 1
    assert meta.policy == "agnostic"


def test_job_end_to_end(client, samples):
    items = samples[:6]
    response = client.infer_job(MODEL, [x for x, _ in items], job_id="j1", budget_ms=10000)
    assert response.job_id == "j1"
    assert len(response.results) == 6
    assert [r.id for r in response.results] == [f"j1-{i}" for i in range(6)]
    for r in response.results:
        assert r.configuration == "audio+image+video"
        assert list(r.modalities_used) == ["audio", "image", "video"]
        assert not r.degraded and r.policy == "agnostic"
        assert len(r.scores) == 10 and abs(sum(r.scores) - 1.0) < 1e-4
        assert r.timing.total_us >= r.timing.compute_us > 0
    correct = sum(r.label == y for r, (_, y) in zip(response.results, items))
    assert correct >= 4, "a trained model should get most of these right"
    assert [(c.configuration, c.count) for c in response.strategy] == [("audio+image+video", 6)]


def test_single_request_and_allowed_modalities(client, samples):
    inputs, _ = samples[0]
    r = client.infer(MODEL, inputs, request_id="r1", budget_ms=10000, allowed=["audio", "image"])
    assert r.id == "r1" and r.configuration == "audio+image"
    # A request that provides only some modalities is served with those.
    r = client.infer(MODEL, {"video": inputs["video"]}, budget_ms=10000)
    assert r.configuration == "video"


def test_stream_answers_each_message_and_survives_bad_ones(client, samples):
    good = [selection_pb2.StreamRequest(request=infer_request(MODEL, samples[i][0], f"s{i}", budget_ms=10000))
            for i in range(3)]
    bad = selection_pb2.StreamRequest(request=infer_request("no-such-model", samples[0][0], "bad", budget_ms=1000))
    job = selection_pb2.StreamRequest(job=job_request(MODEL, [samples[4][0], samples[5][0]], "sj", budget_ms=10000))
    answers = list(client.stream([good[0], bad, good[1], job, good[2]]))
    assert len(answers) == 5
    ids = sorted(a.response.id for a in answers if a.WhichOneof("kind") == "response")
    assert ids == ["s0", "s1", "s2"]
    errors = [a.error for a in answers if a.WhichOneof("kind") == "error"]
    assert len(errors) == 1 and errors[0].id == "bad" and errors[0].code == grpc.StatusCode.NOT_FOUND.value[0]
    jobs = [a.job for a in answers if a.WhichOneof("kind") == "job"]
    assert len(jobs) == 1 and len(jobs[0].results) == 2


def _request(inputs, **slo):
    return infer_request(MODEL, inputs, **({"budget_ms": 5000} | slo))


def _bad_cases(inputs):
    video = inputs["video"]
    wrong_bytes = _request(inputs)
    wrong_bytes.inputs["video"].data = wrong_bytes.inputs["video"].data[:-3]
    extra_modality = _request(inputs)
    extra_modality.inputs["smell"].CopyFrom(wire.encode(np.zeros(3, np.float32)))
    return {
        "unknown model": (infer_request("nope", inputs, budget_ms=5000), grpc.StatusCode.NOT_FOUND, "model"),
        "unknown modality": (extra_modality, grpc.StatusCode.NOT_FOUND, "smell"),
        "bytes do not match dtype x shape": (wrong_bytes, grpc.StatusCode.INVALID_ARGUMENT, "inputs[video].data"),
        "wrong rank": (_request({**inputs, "video": video[0]}), grpc.StatusCode.INVALID_ARGUMENT, "inputs[video]"),
        "wrong shape": (_request({**inputs, "image": np.zeros((5, 5), np.uint8)}), grpc.StatusCode.INVALID_ARGUMENT,
                        "inputs[image]"),
        "wrong dtype": (_request({**inputs, "image": inputs["image"].astype(np.float32)}),
                        grpc.StatusCode.INVALID_ARGUMENT, "inputs[image]"),
        "empty request": (infer_request(MODEL, {}, budget_ms=5000), grpc.StatusCode.INVALID_ARGUMENT, "inputs"),
        "negative deadline": (_request(inputs, budget_ms=-5), grpc.StatusCode.INVALID_ARGUMENT, "slo.budget_ms"),
        "absurd deadline": (_request(inputs, budget_ms=1e12), grpc.StatusCode.INVALID_ARGUMENT, "slo.budget_ms"),
        "deadline in the past": (infer_request(MODEL, inputs, deadline_unix_ms=int(time.time() * 1000) - 1000),
                                 grpc.StatusCode.DEADLINE_EXCEEDED, "slo.deadline_unix_ms"),
        "floor above 1": (_request(inputs, min_accuracy=1.5), grpc.StatusCode.INVALID_ARGUMENT, "slo.min_accuracy"),
        "floor below 0": (_request(inputs, min_accuracy=-0.1), grpc.StatusCode.INVALID_ARGUMENT, "slo.min_accuracy"),
        "floor above best configuration": (_request(inputs, min_accuracy=0.99999), grpc.StatusCode.INVALID_ARGUMENT,
                                           "slo.min_accuracy"),
        "unknown allowed modality": (_request(inputs, allowed=["smell"]), grpc.StatusCode.NOT_FOUND,
                                     "slo.allowed_modalities"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(get_pack(MODEL).test_samples(limit=1)[0][0])))
def test_bad_input_gets_the_right_status_and_names_the_field(client, samples, case):
    request, code, field = _bad_cases(samples[0][0])[case]
    got, details = _code(lambda: client.stub.Infer(request, timeout=10))
    assert got == code, f"{case}: {got} {details}"
    assert field in details, f"{case}: message {details!r} does not name {field!r}"
    assert "Traceback" not in details


def test_services_survive_bad_input_and_count_it(client, samples):
    r = client.infer(MODEL, samples[1][0], budget_ms=10000)
    assert r.configuration == "audio+image+video"
    stats = client.stats(MODEL)
    assert stats.errors["INVALID_ARGUMENT"] >= 10 and stats.errors["NOT_FOUND"] >= 2
    assert stats.requests_served >= 1 and stats.requests_received > stats.requests_served
    # the measured cost of the encoder lanes (one lane: the stack profiles shared placement)
    assert stats.pipeline_depth == 2
    assert [lane.name for lane in stats.lanes] == [f"{MODEL}/audio+image+video"]
    assert stats.lanes[0].samples >= 1 and stats.lanes[0].scale > 0
    assert stats.finishing.name == MODEL and stats.finishing.samples >= 1
    code, details = _code(lambda: client.stats("no-such-model"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_bad_job_item_is_named(client, samples):
    items = [samples[0][0], {**samples[1][0], "image": np.zeros((3, 3), np.uint8)}]
    code, details = _code(lambda: client.infer_job(MODEL, items, budget_ms=5000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "items[1].inputs[image]" in details


def test_sigterm_drains_in_flight_requests(stack, samples):
    """A second selection service on the same store and encoders: SIGTERM while requests are
    in flight must answer every one of them, then exit 0."""
    stack.start_selection("selection_drain", "agnostic")
    svc = stack.services["selection_drain"]
    try:
        with MoselClient(svc.address, timeout_s=60) as c:
            requests = [job_request(MODEL, [x for x, _ in samples[i:i + 8]], f"d{i}", budget_ms=60000)
                        for i in range(0, 32, 8)] * 15
            futures = [c.infer_job_future(r) for r in requests]
            # Signal only once the server holds every call (so none is refused as new) ...
            while c.stats().jobs_received < len(requests):
                time.sleep(0.005)
            # ... and while work is still queued, or the test would prove nothing.
            assert not all(f.done() for f in futures), "all answered before SIGTERM: make the backlog larger"
            svc.proc.send_signal(signal.SIGTERM)
            results = [f.result() for f in futures]
        assert all(len(r.results) == 8 for r in results)
        assert svc.proc.wait(60) == 0
    finally:
        if svc.proc.poll() is None:
            svc.proc.kill()


def test_mosel_service_reports_the_headroom_its_misses_asked_for(stack, client, samples):
    address = stack.start_selection("selection_mosel", "mosel")
    try:
        with MoselClient(address, timeout_s=30) as mosel:
            mosel.wait_ready()
            assert mosel.stats(MODEL).planning_headroom_ms == 0.0
            r = mosel.infer(MODEL, samples[0][0], budget_ms=10000)
            assert r.policy == "mosel"
            # 1 ms cannot be met even by the cheapest configuration: refused, and counted as a miss
            code, details = _code(lambda: mosel.infer(MODEL, samples[0][0], budget_ms=1))
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "unreachable" in details
            assert mosel.stats(MODEL).planning_headroom_ms == pytest.approx(2.0, rel=0.05)  # the default step
    finally:
        svc = stack.services.pop("selection_mosel")
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(30) == 0
    assert client.stats(MODEL).planning_headroom_ms == 0.0  # agnostic keeps none
