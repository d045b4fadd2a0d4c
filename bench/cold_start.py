"""Cold start through the whole platform: a request to a revision at zero → first byte, p50/p95.

Run: `python bench/cold_start.py [--runs 20] [--json]`.

A real `wisp serve` runs on free loopback ports. Each run deploys a fresh Service whose revision
starts at zero (`initial-scale: 0`, allowed by `allow-zero-initial-scale`), then sends one request
through the ingress and stops the clock at the first byte of the response. That covers the whole
scale-from-zero path: the router holds the request, pokes the autoscaler, the autoscaler decides
at once, the supervisor spawns the process, readiness is polled every 25 ms, and the held request
is released. `Wisp-Cold-Start` (the wait the router itself measured) is reported alongside.

The floor is the same app started by hand: spawn `python app.py` and poll its port every 1 ms until
a request gets its first byte. The difference is what wisp adds to a bare process start.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

APP = """
import http.server, os, time

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/work?ms="):  # the burst bench: some work per request
            time.sleep(int(self.path.split("=", 1)[1]) / 1000)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # like uvicorn or gunicorn (2048); http.server uses 5, see docs
    daemon_threads = True

Server(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
CONFIG = {"autoscaler": {"allow-zero-initial-scale": True, "stable-window": "6s",
                         "scale-to-zero-grace-period": "2s"}}


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_byte(port: int, host: str, timeout: float = 60.0) -> tuple[float, dict[str, str]]:
    """One GET to 127.0.0.1:port with `Host: host`; (seconds to the first byte, response headers)."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = sock.recv(1)
        took = time.perf_counter() - start
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {head[0]!r}")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return took, {k.lower(): v for k, v in headers.items()}


@dataclass
class Wisp:
    """A `wisp serve` subprocess plus the CLI pointed at it."""

    root: Path
    api_port: int
    ingress_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "WISP_API": f"http://127.0.0.1:{self.api_port}"}

    def start(self, config: dict[str, Any]) -> None:
        (self.root / "config.yaml").write_text(yaml.safe_dump(config))
        cmd = [sys.executable, "-m", "wisp", "serve", "--data-dir", str(self.root / "data"),
               "--config", str(self.root / "config.yaml"),
               "--api-addr", f"127.0.0.1:{self.api_port}", "--ingress-addr", f"127.0.0.1:{self.ingress_port}"]
        with (self.root / "serve.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.api_port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("wisp serve did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def cli(self, *args: str, input: str | None = None) -> str:
        out = subprocess.run([sys.executable, "-m", "wisp", *args], env=self.env, input=input, text=True,
                             capture_output=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"wisp {' '.join(args)}: {out.stderr}")
        return out.stdout

    def deploy(self, name: str, app_dir: Path, annotations: dict[str, str]) -> str:
        """Apply a Service running `app_dir/app.py`, wait for Ready; returns its Host."""
        svc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "default"},
               "spec": {"template": {"metadata": {"annotations": annotations},
                                     "spec": {"containers": [{"command": [sys.executable, "app.py"],
                                                              "workingDir": str(app_dir)}]}}}}
        self.cli("apply", "-f", "-", input=yaml.safe_dump(svc))
        self.wait_ready(name)
        return f"{name}.default.localhost"

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.cli("service", "describe", name, "-o", "json")
            conds = (json.loads(out).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} never became ready")

    def revision_status(self, name: str) -> dict[str, Any]:
        out = self.cli("revision", "describe", f"{name}-00001", "-o", "json")
        return dict(json.loads(out).get("status") or {})


@contextmanager
def running_wisp(config: dict[str, Any]) -> Iterator[tuple[Wisp, Path]]:
    """A started `wisp serve` and a folder holding the bench app; everything is cleaned up after."""
    with tempfile.TemporaryDirectory(prefix="wisp-bench-") as tmp:
        root = Path(tmp)
        app_dir = root / "app"
        app_dir.mkdir()
        (app_dir / "app.py").write_text(APP)
        server = Wisp(root, free_port(), free_port())
        server.start(config)
        try:
            yield server, app_dir
        finally:
            server.stop()


def floor_once(app_dir: Path) -> float:
    """Start the app by hand and time spawn → first byte (polling the port every 1 ms)."""
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env={**os.environ, "PORT": str(port)})
    try:
        while True:
            try:
                first_byte(port, "floor", timeout=5)
                return time.perf_counter() - start
            except OSError:
                time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1),
            "min_ms": round(ordered[0] * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1), "runs": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with running_wisp(CONFIG) as (server, app_dir):
        hosts = [server.deploy(f"cold-{i}", app_dir, {"autoscaling.knative.dev/initial-scale": "0"})
                 for i in range(args.runs)]
        wisp_runs, router_ms = [], []
        for host in hosts:
            took, headers = first_byte(server.ingress_port, host)
            wisp_runs.append(took)
            router_ms.append(float(headers.get("wisp-cold-start", "nan").rstrip("ms")) / 1000)
        floor_runs = [floor_once(app_dir) for _ in range(args.runs)]
    result = {"scale_from_zero": percentiles(wisp_runs), "router_wait": percentiles(router_ms),
              "floor_process_start": percentiles(floor_runs)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'scenario':<34}{'p50 ms':>9}{'p95 ms':>9}{'min':>8}{'max':>8}")
    for name, row in result.items():
        print(f"{name:<34}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['min_ms']:>8}{row['max_ms']:>8}")


if __name__ == "__main__":
    main()
