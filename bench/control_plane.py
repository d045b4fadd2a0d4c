"""Control-plane benchmark: create N Services through the API of a real `wisp serve`.

Measures, over real loopback HTTP against a `wisp serve` subprocess:
  * create latency (POST → 201),
  * reconcile latency: POST sent → both the Configuration and the Route of that name exist
    (observed through a watch stream, so polling does not skew it),
  * API list latency for all N services, and a label-selected list.

Services use an image that is not in the local store, so no instance starts: this isolates the
control plane (admission, store, watch fan-out, reconcilers).

    python bench/control_plane.py --services 500
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BASE = "/apis/serving.knative.dev/v1/namespaces/default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Seen:
    """Records when a Configuration and a Route of each name first appear, from two watch streams."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.first: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._watch, args=(kind,), daemon=True)
                        for kind in ("configurations", "routes")]
        for t in self.threads:
            t.start()

    def _watch(self, kind: str) -> None:
        try:
            self._stream(kind)
        except httpx.HTTPError:
            pass  # the server went away at the end of the run

    def _stream(self, kind: str) -> None:
        with httpx.Client(base_url=self.api, timeout=None) as http, \
                http.stream("GET", f"{BASE}/{kind}", params={"watch": "true"}) as resp:
            for line in resp.iter_lines():
                event = json.loads(line) if line else {}
                name = event.get("object", {}).get("metadata", {}).get("name")
                if name:
                    with self.lock:
                        self.first.setdefault((kind, name), time.perf_counter())

    def both(self, name: str) -> float | None:
        with self.lock:
            a, b = self.first.get(("configurations", name)), self.first.get(("routes", name))
        return max(a, b) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=500)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="wisp-bench-"))
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    proc = subprocess.Popen([sys.executable, "-m", "wisp", "serve", "--data-dir", str(data), "--api-addr",
                             f"127.0.0.1:{api_port}", "--ingress-addr", f"127.0.0.1:{free_port()}",
                             "--log-level", "warning"], start_new_session=True)
    try:
        with httpx.Client(base_url=api, timeout=30) as http:
            for _ in range(200):
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            seen = Seen(api)
            time.sleep(0.3)
            sent: dict[str, float] = {}
            create_ms: list[float] = []
            t0 = time.perf_counter()
            for i in range(args.services):
                name = f"svc-{i:04d}"
                body = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                        "metadata": {"name": name, "labels": {"bench": "yes" if i % 10 == 0 else "no"}},
                        "spec": {"template": {"spec": {"containers": [{"image": "bench.invalid/none:1"}]}}}}
                start = time.perf_counter()
                resp = http.post(f"{BASE}/services", json=body)
                resp.raise_for_status()
                create_ms.append((time.perf_counter() - start) * 1000)
                sent[name] = start
            deadline = time.perf_counter() + 120
            reconcile_ms: list[float] = []
            for name, start in sent.items():
                while (done := seen.both(name)) is None and time.perf_counter() < deadline:
                    time.sleep(0.005)
                if done is None:
                    raise SystemExit(f"{name}: Configuration/Route never appeared")
                reconcile_ms.append((done - start) * 1000)
            total = time.perf_counter() - t0
            list_ms, sel_ms = [], []
            for _ in range(20):
                s = time.perf_counter()
                items = http.get(f"{BASE}/services").json()["items"]
                list_ms.append((time.perf_counter() - s) * 1000)
                s = time.perf_counter()
                http.get(f"{BASE}/services", params={"labelSelector": "bench=yes"}).raise_for_status()
                sel_ms.append((time.perf_counter() - s) * 1000)
            assert len(items) == args.services
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"services: {args.services} in {total:.1f}s ({args.services / total:.0f}/s end to end)")
        print(f"create (POST→201)        p50 {statistics.median(create_ms):6.2f} ms  p99 {pct(create_ms, 99):6.2f} ms")
        print(f"create→Config+Route      p50 {statistics.median(reconcile_ms):6.2f} ms  "
              f"p99 {pct(reconcile_ms, 99):6.2f} ms")
        print(f"list {args.services} services        p50 {statistics.median(list_ms):6.2f} ms  "
              f"p99 {pct(list_ms, 99):6.2f} ms")
        print(f"list by label selector   p50 {statistics.median(sel_ms):6.2f} ms  p99 {pct(sel_ms, 99):6.2f} ms")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
