"""Cold start of functions, p50/p95 over N runs: backend start → first byte, and scale from zero.

Run: `python bench/func_cold_start.py [--runs 30] [--json] [--no-ingress]`.

Scenarios, all in the same run so they share the machine's state:

* `fork-floor`         a bare os.fork() of this process answering one request: the floor;
* `trivial/function`   a one-line handler on the function runtime (forked from a warm zygote);
* `trivial/process`    the same image command as a fresh interpreter (process runtime);
* `starlette/function` a Starlette app on the function runtime;
* `starlette/process`  the same app as a fresh interpreter.

Targets: trivial p50 ≤ 20 ms, framework app p50 ≤ 80 ms, a fresh process ~300 ms.

Two probes:

* `direct`   the backend alone: the clock starts at `backend.start()` and stops at the first byte
  of a direct HTTP request to the instance's port (polled every 0.5 ms);
* `ingress`  the whole platform: a real `wisp serve` with short autoscaler windows runs each
  scenario as Services at zero (`initial-scale: 0`); the clock starts when a request is sent to
  the ingress and stops at its first byte. That covers the router holding the request, the
  autoscaler poke, the supervisor's start, readiness and the proxied request. Each Service is
  measured round-robin and the next round waits until every revision is back at zero (stable
  window 6 s, grace 1 s), so N runs need N / services-per-scenario rounds. `Wisp-Cold-Start`
  (the router's own view of the wait) is reported as `router_p50_ms`.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


@dataclass
class Result:
    scenario: str
    probe: str
    samples: list[float]
    router: list[float] = field(default_factory=list)  # Wisp-Cold-Start, seconds (ingress only)

    def row(self) -> dict[str, object]:
        target = TARGETS_MS.get(self.scenario)
        p50 = percentile(self.samples, 50)
        row: dict[str, object] = {
            "scenario": self.scenario, "probe": self.probe, "runs": len(self.samples),
            "p50_ms": round(p50, 2), "p95_ms": round(percentile(self.samples, 95), 2),
            "mean_ms": round(statistics.fmean(self.samples) * 1000, 2),
            "target_p50_ms": target, "meets_target": None if target is None else p50 <= target}
        if self.router:
            row["router_p50_ms"] = round(percentile(self.router, 50), 2)
        return row


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


def write_code(root: Path) -> Path:
    code = root / "code"
    code.mkdir()
    (code / "main.py").write_text(TRIVIAL)
    (code / "web.py").write_text(STARLETTE)
    return code


async def main_async(runs: int, ingress: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="wisp-bench-") as tmp:
        root = Path(tmp)
        code = write_code(root)
        results = await backend_results(root, code, runs)
        if ingress:
            results += await asyncio.to_thread(ingress_results, root, code, runs)
        return results


async def backend_results(root: Path, code: Path, runs: int) -> list[Result]:
    """Every scenario on the backends alone, probed directly."""
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


# ---- scale from zero through the ingress -------------------------------------------------------

INGRESS_CONFIG = {"autoscaler": {"allow-zero-initial-scale": True, "stable-window": "6s",
                                 "scale-to-zero-grace-period": "1s", "tick-interval": "0.5s"}}
# scenario → (entrypoint, runtime annotation or None for the default process runtime)
INGRESS_SCENARIOS: dict[str, tuple[str, str | None]] = {
    "trivial/function": ("main:handle", "function"), "trivial/process": ("main:handle", None),
    "starlette/function": ("web:app", "function"), "starlette/process": ("web:app", None)}
SERVICES = "/apis/serving.knative.dev/v1/namespaces/default/services"
REVISIONS = "/apis/serving.knative.dev/v1/namespaces/default/revisions"


def service(name: str, code: Path, entry: str, runtime: str | None) -> dict[str, Any]:
    """A Service at zero running the function server on `entry` (no image: a working dir)."""
    annotations = {"autoscaling.knative.dev/initial-scale": "0"}
    if runtime:
        annotations["wisp.dev/runtime"] = runtime
    container = {"command": [sys.executable, "-m", "wisp.runtime.funcserver", entry], "workingDir": str(code)}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}}}}


def wait_revisions(api: httpx.Client, names: set[str], ready: bool, timeout: float = 120) -> None:
    """Until every named revision is Ready (`ready`) or back at zero replicas (not `ready`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.get(REVISIONS).json().get("items") or []
        done = set()
        for rev in items:
            status = rev.get("status") or {}
            conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
            if (conds.get("Ready") == "True") if ready else not status.get("actualReplicas"):
                done.add(rev["metadata"]["name"])
        if names <= done:
            return
        time.sleep(0.2)
    raise RuntimeError(f"revisions not {'ready' if ready else 'at zero'}: {sorted(names)}")


def ingress_results(root: Path, code: Path, runs: int, per_scenario: int = 6) -> list[Result]:
    """Each scenario as `per_scenario` Services at zero, each hit round-robin until `runs` samples."""
    from cold_start import Wisp, first_byte, free_port  # the same `wisp serve` harness

    server = Wisp(root / "wisp", free_port(), free_port())
    server.root.mkdir()
    server.start(INGRESS_CONFIG)
    results = {name: Result(name, "ingress", []) for name in INGRESS_SCENARIOS}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=30) as api:
            hosts = deploy_all(api, code, min(per_scenario, runs))
            while any(len(r.samples) < runs for r in results.values()):
                for index in range(len(next(iter(hosts.values())))):
                    for name, result in results.items():
                        if len(result.samples) < runs:
                            took, headers = first_byte(server.ingress_port, hosts[name][index])
                            result.samples.append(took)
                            result.router.append(float(headers["wisp-cold-start"].removesuffix("ms")) / 1000)
                wait_revisions(api, {h.split(".")[0] + "-00001" for hs in hosts.values() for h in hs}, False)
    finally:
        server.stop()
    return list(results.values())


def deploy_all(api: httpx.Client, code: Path, count: int) -> dict[str, list[str]]:
    """`count` Services per scenario, all Ready at zero; scenario → their Host names."""
    hosts: dict[str, list[str]] = {}
    for name, (entry, runtime) in INGRESS_SCENARIOS.items():
        for i in range(count):
            svc = f"{name.replace('/', '-')}-{i}"
            api.post(SERVICES, json=service(svc, code, entry, runtime)).raise_for_status()
            hosts.setdefault(name, []).append(f"{svc}.default.localhost")
    wait_revisions(api, {h.split(".")[0] + "-00001" for hs in hosts.values() for h in hs}, True)
    return hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument("--no-ingress", action="store_true", help="measure the backends only")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.runs, not args.no_ingress))
    rows = [r.row() for r in results]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'scenario':<20} {'probe':<8} {'p50 ms':>8} {'p95 ms':>8} {'target':>8} {'router p50':>11}")
    for row in rows:
        target = "" if row["target_p50_ms"] is None else f"≤{row['target_p50_ms']:.0f}"
        mark = {True: " ok", False: " MISSED", None: ""}[row["meets_target"]]  # type: ignore[index]
        router = f"{row['router_p50_ms']:>11.1f}" if "router_p50_ms" in row else ""
        print(f"{row['scenario']:<20} {row['probe']:<8} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
              f"{target:>8}{router}{mark}")


if __name__ == "__main__":
    main()
