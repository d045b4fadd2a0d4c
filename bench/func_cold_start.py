"""Cold start of functions: backend `start()` → first byte of the first response, p50/p95.

Run: `python bench/func_cold_start.py [--runs 30] [--json]`.

Scenarios, all in the same run so they share the machine's state:

* `fork-floor`     a bare os.fork() of this process answering one request: the floor;
* `trivial/function`   a one-line handler on the function runtime (forked from a warm zygote);
* `trivial/process`    the same image command as a fresh interpreter (process runtime);
* `starlette/function` a Starlette app on the function runtime;
* `starlette/process`  the same app as a fresh interpreter.

Targets: trivial p50 ≤ 20 ms, framework app p50 ≤ 80 ms, a fresh process ~300 ms.

The clock stops at the first byte of a direct HTTP request to the instance's port (polled every
0.5 ms). The scale-from-zero path through the ingress and activator is not measured yet: add a
`Probe` to `PROBES` (e.g. one that requests through the ingress with a Host header) and every
scenario will be measured through it as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from wisp.clock import SystemClock
from wisp.runtime.base import InstanceSpec, ProbeSpec
from wisp.runtime.function import FunctionBackend
from wisp.runtime.process import ProcessBackend

TRIVIAL = "def handle(request):\n    return 'ok'\n"
STARLETTE = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def home(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/", home)])
"""
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
TARGETS_MS = {"trivial/function": 20.0, "starlette/function": 80.0}

# A probe: (host, port, deadline) → seconds until the first byte arrives.
Probe = Callable[[str, int, float], Awaitable[None]]
# A scenario: start one instance, wait for the first byte through `probe`, stop it; return seconds.
Scenario = Callable[[Probe], Awaitable[float]]


async def direct_first_byte(host: str, port: int, deadline: float) -> None:
    """Connect (retrying while nothing listens), send one request, return at the first byte."""
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"nothing answered on {host}:{port}") from None
            await asyncio.sleep(0.0005)
            continue
        try:
            writer.write(REQUEST)
            await writer.drain()
            if await reader.read(1):
                return
        finally:
            writer.close()


PROBES: dict[str, Probe] = {"direct": direct_first_byte}


@dataclass
class Result:
    scenario: str
    probe: str
    samples: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    def row(self) -> dict[str, object]:
        target = TARGETS_MS.get(self.scenario)
        p50 = self.percentile(50)
        return {"scenario": self.scenario, "probe": self.probe, "runs": len(self.samples),
                "p50_ms": round(p50, 2), "p95_ms": round(self.percentile(95), 2),
                "mean_ms": round(statistics.fmean(self.samples) * 1000, 2),
                "target_p50_ms": target, "meets_target": None if target is None else p50 <= target}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fork_floor() -> Scenario:
    """os.fork() of this process; the child listens and answers one request with raw sockets."""
    async def run(probe: Probe) -> float:
        port = _free_port()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                srv = socket.socket()
                srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                srv.bind(("127.0.0.1", port))
                srv.listen(8)
                conn, _ = srv.accept()
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                conn.close()
            finally:
                os._exit(0)
        await probe("127.0.0.1", port, start + 10)
        elapsed = time.perf_counter() - start
        await asyncio.to_thread(os.waitpid, pid, 0)
        return elapsed
    return run


def on_backend(backend: FunctionBackend | ProcessBackend, spec: InstanceSpec) -> Scenario:
    async def run(probe: Probe) -> float:
        start = time.perf_counter()
        instance = await backend.start(spec)
        try:
            await probe(instance.host, instance.port, start + 30)
            return time.perf_counter() - start
        finally:
            await backend.stop(instance, 5)
    return run


def function_spec(code: Path, entry: str, revision: str) -> InstanceSpec:
    # A long probe period: the backend's own readiness prober must not compete with the measurement.
    return InstanceSpec("bench", revision, [sys.executable, "-m", "wisp.runtime.funcserver", entry],
                        working_dir=str(code), readiness=ProbeSpec(period_seconds=60))


async def measure(name: str, scenario: Scenario, runs: int, warmup: int = 2) -> list[Result]:
    results = []
    for probe_name, probe in PROBES.items():
        for _ in range(warmup):
            await scenario(probe)
        results.append(Result(name, probe_name, [await scenario(probe) for _ in range(runs)]))
    return results


async def main_async(runs: int) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="wisp-bench-") as tmp:
        root = Path(tmp)
        code = root / "code"
        code.mkdir()
        (code / "main.py").write_text(TRIVIAL)
        (code / "web.py").write_text(STARLETTE)
        clock = SystemClock()
        functions = FunctionBackend(root / "fn", clock)
        processes = ProcessBackend(root / "proc", clock)
        trivial, web = function_spec(code, "main:handle", "trivial"), function_spec(code, "web:app", "web")
        try:
            await functions.prewarm(trivial)  # zygotes are kept warm ahead of need
            results = []
            for name, scenario in (("fork-floor", fork_floor()),
                                   ("trivial/function", on_backend(functions, trivial)),
                                   ("trivial/process", on_backend(processes, trivial)),
                                   ("starlette/function", on_backend(functions, web)),
                                   ("starlette/process", on_backend(processes, web))):
                results += await measure(name, scenario, runs)
            return results
        finally:
            await functions.close(5)
            await processes.close(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.runs))
    rows = [r.row() for r in results]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'scenario':<20} {'probe':<8} {'p50 ms':>8} {'p95 ms':>8} {'target':>8}")
    for row in rows:
        target = "" if row["target_p50_ms"] is None else f"≤{row['target_p50_ms']:.0f}"
        mark = {True: " ok", False: " MISSED", None: ""}[row["meets_target"]]  # type: ignore[index]
        print(f"{row['scenario']:<20} {row['probe']:<8} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
              f"{target:>8}{mark}")


if __name__ == "__main__":
    main()
