"""Autoscaling e2e: scale to zero and back, bursts, containerConcurrency and the request timeouts.

One real `wisp serve` with short windows (stable 6 s, grace 2 s) and real app processes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServingServer, condition, wait_until

pytestmark = pytest.mark.e2e
WISP_CONFIG = {"autoscaler": {"stable-window": "6s", "scale-to-zero-grace-period": "2s"}}
PY = sys.executable

APP = r'''
"""Test app: /sleep?s=, /overlap?s= (fails if two requests overlap in this process), /stream."""
import http.server
import os
import threading
import time
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
busy = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        global busy
        url = urlparse(self.path)
        q = {k: float(v[0]) for k, v in parse_qs(url.query).items()}
        if url.path == "/sleep":
            time.sleep(q.get("s", 0))
            self._send(200, f"slept {os.getpid()}")
        elif url.path == "/overlap":
            with lock:
                busy += 1
                clash = busy > 1
            time.sleep(q.get("s", 0))
            with lock:
                busy -= 1
            self._send(500 if clash else 200, b"overlap" if clash else f"alone {os.getpid()}")
        elif url.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(q.get("n", 3))):
                time.sleep(q.get("gap", 0.1))
                self._chunk(b"part%d\n" % i)
            self._chunk(b"")
        else:
            self._send(200, f"pid {os.getpid()}")

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send(self, code, body):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
'''


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("app")
    (folder / "app.py").write_text(APP)
    return folder


def deploy(server: ServingServer, name: str, app: Path, *, annotations: dict[str, str] | None = None,
           **spec: Any) -> str:
    """Apply a Service running the test app; returns its Host header once it is Ready."""
    server.apply({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {
            "metadata": {"annotations": annotations or {}},
            "spec": {**spec, "containers": [{"command": [PY, "app.py"], "workingDir": str(app)}]}}}})
    wait_until(lambda: condition(server.obj("Service", name)).get("status") == "True", 30,
               what=f"{name} Ready")
    return f"{name}.default.localhost"


def revision_status(server: ServingServer, name: str) -> dict[str, Any]:
    return server.obj("Revision", f"{name}-00001").get("status") or {}


def test_idle_service_scales_to_zero_and_a_request_brings_it_back(serving_server: ServingServer,
                                                                  app_dir: Path) -> None:
    host = deploy(serving_server, "sleepy", app_dir)
    assert serving_server.call(host).status_code == 200
    # Idle: a stable window with no traffic (6 s), then the grace period (2 s), then it is gone.
    status = wait_until(lambda: (st := revision_status(serving_server, "sleepy")).get("actualReplicas") == 0
                        and condition({"status": st}, "Active").get("status") == "False" and st,
                        timeout=25, interval=0.2, what="sleepy at zero")
    assert condition({"status": status}, "Active")["reason"] == "NoTraffic"
    assert status["desiredReplicas"] == 0
    # The revision is still Ready: being at zero is not a failure.
    assert condition(serving_server.obj("Revision", "sleepy-00001"))["status"] == "True"
    described = serving_server.cli("service", "describe", "sleepy").stdout
    assert "Scaled to zero" in described and " 0/0 " in described, described
    listed = serving_server.cli("service", "list").stdout
    assert "REPLICAS" in listed and any(" sleepy " in f" {line} " and " 0/0 " in line
                                        for line in listed.splitlines()), listed

    started = time.monotonic()
    resp = serving_server.call(host, timeout=30)
    took = time.monotonic() - started
    assert resp.status_code == 200 and resp.text.startswith("pid ")
    cold = resp.headers.get("wisp-cold-start", "")
    assert cold.endswith("ms") and 0 < int(cold[:-2]) <= took * 1000 + 1
    wait_until(lambda: condition(serving_server.obj("Revision", "sleepy-00001"), "Active").get("status")
               == "True", what="sleepy Active again")
    assert revision_status(serving_server, "sleepy")["actualReplicas"] == 1
    assert "Active" in serving_server.cli("revision", "describe", "sleepy-00001").stdout


def _hammer(server: ServingServer, host: str, path: str, clients: int, seconds: float) -> Counter[str]:
    """`clients` threads sending requests back to back for `seconds`; counts results by outcome."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                try:
                    r = client.get(server.ingress + path, headers={"Host": host})
                    key = f"{r.status_code} {r.text.split()[0]}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                with lock:
                    outcomes[key] += 1

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(worker)
    return outcomes


def test_burst_scales_out_past_one_instance_and_back_down(serving_server: ServingServer,
                                                         app_dir: Path) -> None:
    # Target 2 concurrent requests per instance (x 70 % utilisation): 12 clients need several.
    host = deploy(serving_server, "bursty", app_dir, annotations={"autoscaling.knative.dev/target": "2"})
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], revision_status(serving_server, "bursty").get("actualReplicas", 0))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcomes = _hammer(serving_server, host, "/sleep?s=0.2", clients=12, seconds=6)
    finally:
        done.set()
        watcher.join()
    assert set(outcomes) == {"200 slept"}, outcomes
    assert peak[0] > 1, f"never scaled out (peak {peak[0]})"
    wait_until(lambda: revision_status(serving_server, "bursty").get("actualReplicas", 99) <= 1,
               timeout=30, interval=0.2, what="bursty scaled back down")


def test_container_concurrency_one_never_overlaps_and_every_request_succeeds(
        serving_server: ServingServer, app_dir: Path) -> None:
    host = deploy(serving_server, "single", app_dir, containerConcurrency=1)
    outcomes = _hammer(serving_server, host, "/overlap?s=0.05", clients=8, seconds=3)
    assert set(outcomes) == {"200 alone"}, outcomes
    assert outcomes.total() >= 20


def test_timeouts_total_response_start_and_idle(serving_server: ServingServer, app_dir: Path) -> None:
    host = deploy(serving_server, "patient", app_dir, timeoutSeconds=2, responseStartTimeoutSeconds=1,
                  idleTimeoutSeconds=1)
    started = time.monotonic()
    late = serving_server.call(host, "/sleep?s=3")
    assert late.status_code == 504 and "timeout" in late.text
    assert time.monotonic() - started < 2.5  # the response-start timer fired, not the app's reply
    # A stream that starts at once and writes every 0.3 s outlives the response-start and idle
    # timeouts (1 s each) and ends before the total (2 s): nothing cuts it.
    stream = serving_server.call(host, "/stream?n=5&gap=0.3")
    assert stream.status_code == 200
    assert stream.text == "".join(f"part{i}\n" for i in range(5))
    # Quiet for longer than idleTimeoutSeconds after the headers: the stream is cut.
    with pytest.raises(httpx.HTTPError):
        serving_server.call(host, "/stream?n=2&gap=1.5").raise_for_status()
