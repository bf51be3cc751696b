"""Metrics of any gRPC service (interceptor) and their HTTP endpoint, over real loopback gRPC
and HTTP; the exposition is checked with Prometheus's own `promtool` and scraped by a real
Prometheus server."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from concurrent import futures

import grpc
import pytest

from mosel.engine.stats import ServingStats, export_gauges
from mosel.metrics.endpoint import start_metrics_endpoint
from mosel.metrics.families import SelectionMetrics, ServiceMetrics
from mosel.metrics.interceptor import MetricsInterceptor
from tests.metrics.prometheus import PROMETHEUS, PROMTOOL, prometheus_server

SERVICE = "test.Echo"


def _handlers():
    def ok(request, context):
        return request

    def invalid(request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")

    def crash(request, context):
        raise RuntimeError("boom")

    def stream(request, context):
        yield from (request for _ in range(3))

    same = dict(request_deserializer=None, response_serializer=None)
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Ok": grpc.unary_unary_rpc_method_handler(ok, **same),
        "Invalid": grpc.unary_unary_rpc_method_handler(invalid, **same),
        "Crash": grpc.unary_unary_rpc_method_handler(crash, **same),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, **same),
    })


@pytest.fixture
def served():
    metrics = ServiceMetrics("echo")
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[MetricsInterceptor(metrics)])
    server.add_generic_rpc_handlers([_handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield metrics, channel
    finally:
        channel.close()
        server.stop(None)


def _value(metrics: ServiceMetrics, name: str, **labels) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_every_call_is_counted_by_method_and_code(served):
    metrics, channel = served
    call = lambda method: channel.unary_unary(f"/{SERVICE}/{method}")(b"x", timeout=5)  # noqa: E731
    call("Ok"), call("Ok")
    for method, code in (("Invalid", grpc.StatusCode.INVALID_ARGUMENT), ("Crash", grpc.StatusCode.UNKNOWN)):
        with pytest.raises(grpc.RpcError) as err:
            call(method)
        assert err.value.code() == code
    assert list(channel.unary_stream(f"/{SERVICE}/Stream")(b"y", timeout=5)) == [b"y"] * 3
    count = lambda method, code: _value(metrics, "mosel_rpc_requests_total", service="echo",  # noqa: E731
                                        method=method, code=code)
    assert count("Ok", "OK") == 2
    assert count("Invalid", "INVALID_ARGUMENT") == 1
    assert count("Crash", "UNKNOWN") == 1
    assert count("Stream", "OK") == 1
    assert _value(metrics, "mosel_rpc_duration_seconds_count", service="echo", method="Ok") == 2
    assert _value(metrics, "mosel_rpc_in_flight", service="echo") == 0


def test_serving_events_feed_the_selection_families():
    metrics = SelectionMetrics()
    stats = ServingStats(model="m", metrics=metrics)
    stats.received(3)
    stats.served_job(["audio", "audio+video"], [0.7, 0.9], degraded=1, latency_ms=40.0, late=True, queue_ms=5.0)
    stats.failed("RESOURCE_EXHAUSTED", 1, "queue_full")
    stats.encoded("audio", 2, 0.004)
    export_gauges(metrics, "m", lambda: 7, lambda: 0.012)
    v = lambda name, **labels: _value(metrics, name, **labels)  # noqa: E731
    assert v("mosel_requests_served_total", model="m", configuration="audio") == 1
    assert v("mosel_requests_degraded_total", model="m") == 1
    assert v("mosel_deadline_missed_after_completion_total", model="m") == 2
    assert v("mosel_requests_refused_total", model="m", code="RESOURCE_EXHAUSTED", reason="queue_full") == 1
    assert v("mosel_job_duration_seconds_sum", model="m") == pytest.approx(0.040)
    assert v("mosel_job_queue_seconds_sum", model="m") == pytest.approx(0.005)
    assert v("mosel_expected_accuracy_count", model="m") == 2
    assert v("mosel_encoder_batch_size_sum", model="m", modality="audio") == 2
    assert v("mosel_queue_depth", model="m") == 7
    assert v("mosel_planning_headroom_seconds", model="m") == pytest.approx(0.012)
    assert stats.snapshot()["requests_served"] == 2  # GetStats sees the same events


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_endpoint_passes_promtool(served, tmp_path):
    metrics, channel = served
    channel.unary_unary(f"/{SERVICE}/Ok")(b"x", timeout=5)
    endpoint = start_metrics_endpoint(metrics, port=0)
    try:
        text = _scrape(endpoint.port)
        assert 'mosel_rpc_requests_total{code="OK",method="Ok",service="echo"} 1.0' in text
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        endpoint.stop()


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) not installed")
def test_a_prometheus_server_scrapes_the_endpoint(served):
    metrics, channel = served
    endpoint = start_metrics_endpoint(metrics, port=0)
    try:
        with prometheus_server({"echo": f"127.0.0.1:{endpoint.port}"}) as prom:
            prom.wait_all_up(expected=1)
            channel.unary_unary(f"/{SERVICE}/Ok")(b"x", timeout=5)
            result = []
            for _ in range(100):  # until a scrape after the call has landed
                result = prom.query('mosel_rpc_requests_total{method="Ok",code="OK"}')
                if result and float(result[0]["value"][1]) >= 1:
                    break
                time.sleep(0.1)
            assert result and float(result[0]["value"][1]) == 1.0, result
    finally:
        endpoint.stop()
