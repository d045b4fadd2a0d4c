"""Benchmark: wisp's ingress router against nginx as a reverse proxy, side by side.

Needs ``nginx`` and ``wrk`` on PATH (Debian/Ubuntu: ``apt-get install -y nginx-light wrk``); installs
nothing itself. One backend (nginx answering a fixed 200 from memory) is measured three ways:

  direct  wrk → backend
  nginx   wrk → nginx proxy (1 worker, upstream keepalive) → backend
  wisp    wrk → python -m wisp.dataplane (1 process, uvloop) → backend

Run from the repository root:

    python bench/router_vs_nginx.py                    # 50 connections, 2 threads, 3 rounds of 10 s
    python bench/router_vs_nginx.py --duration 5 --rounds 1 --connections 50 --threads 2

It prints requests/s, p50 and p99 for each, the wisp/nginx throughput ratio and the latency wisp
adds over direct (targets: >= 0.6x nginx throughput, <= 0.5 ms added p50), then the same three
with a single connection, where latency is the per-request cost of the hop. Both proxies get one
worker process so the comparison is per core. All processes and the temp dir are cleaned up.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "bench.wisp.localhost"

BACKEND_CONF = """
worker_processes 1;
daemon off;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello, world\\n"; }}
    }}
}}
"""

PROXY_CONF = """
worker_processes 1;
daemon off;
pid {dir}/proxy.pid;
error_log {dir}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port}")


def start_nginx(conf: str, path: Path) -> subprocess.Popen[bytes]:
    path.write_text(conf)
    return subprocess.Popen(["nginx", "-p", str(path.parent), "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_wisp(port: int, backend: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "wisp.dataplane", "--uvloop", "--listen", f"127.0.0.1:{port}",
           "--route", f"{HOST}=127.0.0.1:{backend}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_wrk(name: str, port: int, duration: int, threads: int, connections: int) -> Result:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, duration)}s", "--latency",
           "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    err = re.search(r"(Socket errors:.*|Non-2xx.*)", out)
    return Result(name, rps, p50, p99, err.group(1) if err else "")


def measure(name: str, port: int, args: argparse.Namespace, connections: int) -> Result:
    threads = min(args.threads, connections)
    run_wrk(name, port, args.warmup, threads, connections)
    return run_wrk(name, port, args.duration, threads, connections)


def rounds(targets: list[tuple[str, int]], args: argparse.Namespace, connections: int) -> list[Result]:
    """Interleave the targets for ``--rounds`` rounds and keep each one's median figures, so a
    burst of load from elsewhere on the machine does not decide the comparison."""
    runs: dict[str, list[Result]] = {name: [] for name, _ in targets}
    for _ in range(args.rounds):
        for name, port in targets:
            runs[name].append(measure(name, port, args, connections))
    return [
        Result(name, statistics.median(r.rps for r in rs), statistics.median(r.p50_ms for r in rs),
               statistics.median(r.p99_ms for r in rs), "; ".join(r.errors for r in rs if r.errors))
        for name, rs in runs.items()
    ]


def report(results: list[Result], single: list[Result]) -> None:
    print(f"\n{'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for r in results:
        print(f"{r.name:<8} {r.rps:>10.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}  {r.errors}")
    by = {r.name: r for r in results}
    direct, nginx, wisp = by["direct"], by["nginx"], by["wisp"]
    print(f"\nwisp/nginx throughput: {wisp.rps / nginx.rps:.2f}x  (target >= 0.6x)")
    print(f"added p50 vs direct: nginx {nginx.p50_ms - direct.p50_ms:+.3f} ms, "
          f"wisp {wisp.p50_ms - direct.p50_ms:+.3f} ms  (target <= 0.5 ms)")
    print(f"added p99 vs direct: nginx {nginx.p99_ms - direct.p99_ms:+.3f} ms, "
          f"wisp {wisp.p99_ms - direct.p99_ms:+.3f} ms")
    # At 50 connections latency is mostly queueing (Little's law: connections / throughput);
    # one connection shows what a single request pays for the extra hop.
    by1 = {r.name: r for r in single}
    print("\none connection (no queueing):")
    for r in single:
        print(f"{r.name:<8} {r.rps:>10.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f}  {r.errors}")
    for name in ("nginx", "wisp"):
        print(f"added per request by {name}: p50 {by1[name].p50_ms - by1['direct'].p50_ms:+.3f} ms, "
              f"p99 {by1[name].p99_ms - by1['direct'].p99_ms:+.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH (apt-get install -y nginx-light wrk)")
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="wisp-bench-") as tmp:
        d = Path(tmp)
        backend, proxy, wisp = free_port(), free_port(), free_port()
        try:
            procs.append(start_nginx(BACKEND_CONF.format(dir=d, port=backend), d / "backend.conf"))
            procs.append(start_nginx(PROXY_CONF.format(dir=d, port=proxy, backend=backend), d / "proxy.conf"))
            procs.append(start_wisp(wisp, backend))
            for port in (backend, proxy, wisp):
                wait_port(port)
            print(f"cpus={os.cpu_count()} wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
                  f"median of {args.rounds} interleaved rounds")
            targets = [("direct", backend), ("nginx", proxy), ("wisp", wisp)]
            results = rounds(targets, args, args.connections)
            single = rounds(targets, args, 1)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    report(results, single)


if __name__ == "__main__":
    main()
