"""A throwaway Prometheus server for tests (Debian's `prometheus` package): scrapes the given
targets every 200 ms from a temp dir, on a free loopback port, and is stopped afterwards."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path):
        self.url, self.proc, self.log = url, proc, log

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query?query=" + urllib.request.quote(expr))["result"]

    def wait_all_up(self, expected: int, limit_s: float = 120.0) -> list[dict]:
        """Until every target has been scraped successfully; a generous limit that only
        bounds a broken setup (a healthy one is up within a second or two)."""
        deadline = time.monotonic() + limit_s
        while True:
            targets = self.targets()
            if len(targets) == expected and all(t["health"] == "up" for t in targets):
                return targets
            if time.monotonic() > deadline:
                raise AssertionError(f"targets not all up: {[(t['scrapeUrl'], t['health'], t.get('lastError')) for t in targets]}")
            time.sleep(0.2)


@contextlib.contextmanager
def prometheus_server(targets: dict[str, str]) -> Iterator[PrometheusServer]:
    """`targets`: job name -> "host:port" of a /metrics endpoint."""
    work = Path(tempfile.mkdtemp(prefix="mosel-prometheus-"))
    jobs = "\n".join(f"  - job_name: {name}\n    static_configs:\n      - targets: ['{addr}']"
                     for name, addr in targets.items())
    (work / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\nscrape_configs:\n{jobs}\n")
    port = _free_port()
    log = work / "prometheus.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT)
    server = PrometheusServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
