"""Burst from zero: 200 clients hit a revision with no instance at the same moment.

Run: `python bench/burst.py [--clients 200] [--work-ms 100] [--target 10] [--backlog N] [--json]`.

A real `wisp serve` (stable window 6 s) and a Service starting at zero. Every client opens its own
connection and sends one request that does `--work-ms` of work; the clock runs from the first send
until the last response is complete. Reported: that time, the slowest single request, errors (any
non-200 or connection failure — it must be 0: the router holds every request while instances
start), and the peak number of ready instances seen in the Revision status (polled every 100 ms).
`--target` is the per-instance concurrency target annotation, so the burst has to scale out.
`--backlog` sets the app's listen backlog (default 1024, like uvicorn/gunicorn; `http.server`'s own
default is 5, which is what the router's per-instance dial limit exists for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import urllib.request
from typing import Any

from cold_start import APP, CONFIG, running_wisp

BACKLOG_LINE = "    request_queue_size = 1024"


async def one_request(port: int, host: str, path: str) -> tuple[bool, float]:
    """(succeeded, seconds) for one GET on a fresh connection."""
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 120)
        writer.close()
        return data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), time.perf_counter() - start
    except (OSError, TimeoutError):
        return False, time.perf_counter() - start


async def burst(port: int, host: str, clients: int, work_ms: int) -> tuple[float, list[tuple[bool, float]]]:
    start = time.perf_counter()
    results = await asyncio.gather(*(one_request(port, host, f"/work?ms={work_ms}") for _ in range(clients)))
    return time.perf_counter() - start, list(results)


def watch_peak(api_port: int, revision: str, stop: threading.Event, peak: list[int]) -> None:
    url = f"http://127.0.0.1:{api_port}/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}"
    while not stop.is_set():
        with urllib.request.urlopen(url, timeout=5) as resp:
            status = json.load(resp).get("status") or {}
        peak[0] = max(peak[0], int(status.get("actualReplicas") or 0))
        stop.wait(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--work-ms", type=int, default=100)
    parser.add_argument("--target", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=1024, help="the app's listen backlog")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if BACKLOG_LINE not in APP:
        raise SystemExit("bench app changed: cannot set its backlog")
    with running_wisp(CONFIG) as (server, app_dir):
        (app_dir / "app.py").write_text(APP.replace(BACKLOG_LINE, f"    request_queue_size = {args.backlog}"))
        host = server.deploy("burst", app_dir, {"autoscaling.knative.dev/initial-scale": "0",
                                                "autoscaling.knative.dev/target": str(args.target)})
        stop, peak = threading.Event(), [0]
        watcher = threading.Thread(target=watch_peak, args=(server.api_port, "burst-00001", stop, peak))
        watcher.start()
        try:
            total, results = asyncio.run(burst(server.ingress_port, host, args.clients, args.work_ms))
            time.sleep(3)  # instances asked for during the burst may become ready just after it
        finally:
            stop.set()
            watcher.join()
    errors = sum(1 for ok, _ in results if not ok)
    slowest = max(t for _, t in results)
    report: dict[str, Any] = {"clients": args.clients, "work_ms": args.work_ms, "target": args.target,
                              "backlog": args.backlog,
                              "all_served_s": round(total, 3), "slowest_request_s": round(slowest, 3),
                              "errors": errors, "peak_instances": peak[0]}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<20}{value}")
    if errors:
        raise SystemExit(f"{errors} requests failed")


if __name__ == "__main__":
    main()
