"""Every service of a real stack exports Prometheus metrics, and a real Prometheus server
scrapes them all while the stack serves."""

from __future__ import annotations

import time

import pytest

from mosel.client import MoselClient
from mosel.launch.stack import Stack, bring_up
from mosel.models import get_pack
from tests.metrics.prometheus import PROMETHEUS, prometheus_server

MODEL = "av-digits"


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian package) not installed")
def test_prometheus_scrapes_every_service_while_it_serves(tiny_model_home):
    stack = Stack(home=tiny_model_home, model=MODEL, metrics=True)
    try:
        bring_up(stack, progress=False, say=lambda *_: None)
        targets = {name: f"127.0.0.1:{port}" for name, port in stack.metrics_ports.items()}
        assert set(targets) == {"profile_store", "selection", "encoder_audio", "encoder_image", "encoder_video"}
        samples = get_pack(MODEL).test_samples(limit=4)
        with prometheus_server(targets) as prom, MoselClient(stack.endpoint("selection"), timeout_s=30) as client:
            client.wait_ready()
            for inputs, _label in samples:
                client.infer(MODEL, inputs, budget_ms=5000)
            prom.wait_all_up(expected=len(targets))
            expected = {
                'mosel_rpc_requests_total{job="selection",method="Infer",code="OK"}': len(samples),
                'sum(mosel_requests_served_total{job="selection"})': len(samples),
                'sum(mosel_encoder_compute_seconds_count{job="encoder_audio"})': 1,
                'mosel_rpc_requests_total{job="profile_store",code="OK"}': 1,
            }
            found = {}
            for _ in range(200):  # until a scrape after the calls has landed (200 ms interval)
                found = {q: sum(float(r["value"][1]) for r in prom.query(q)) for q in expected}
                if all(found[q] >= n for q, n in expected.items()):
                    break
                time.sleep(0.1)
            assert all(found[q] >= n for q, n in expected.items()), found
            assert found['mosel_rpc_requests_total{job="selection",method="Infer",code="OK"}'] == len(samples)
    finally:
        codes = stack.stop()
    assert all(c == 0 for c in codes.values()), codes
