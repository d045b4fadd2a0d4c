"""End-to-end tests of the process runtime and the revision supervisor with real processes.

Each test writes a tiny Python HTTP app to tmp_path and runs it with `sys.executable`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wisp.clock import SystemClock
from wisp.runtime import reaper
from wisp.runtime.base import Instance, InstanceSpec, InstanceState, ProbeSpec
from wisp.runtime.logs import tail
from wisp.runtime.process import ProcessBackend
from wisp.runtime.supervisor import RevisionSupervisor, SupervisorStatus

pytestmark = pytest.mark.e2e

APP = r'''
"""A tiny HTTP app for the process-runtime tests; behaviour is chosen by environment variables.

APP_BIND_DELAY   seconds to wait before listening (tcp probe not ready before)
APP_READY_DELAY  /ready answers 503 until this many seconds after start (http probe)
APP_READY_FILE   create this file after APP_READY_DELAY (exec probe)
APP_EXIT_CODE    print a few lines, then exit with this code at once
APP_NEVER_LISTEN never bind at all
APP_IGNORE_TERM  ignore SIGTERM
APP_GRANDCHILD   spawn a grandchild that sleeps; write its pid to this file
APP_PRINT_EVERY  print a numbered line at this interval
"""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

START = time.monotonic()
env = os.environ
sick = threading.Event()

if "APP_EXIT_CODE" in env:
    for i in range(15):
        print(f"line {i}")
    print("fatal: something broke", file=sys.stderr)
    sys.exit(int(env["APP_EXIT_CODE"]))


def on_term(signum, frame):
    print("got SIGTERM, finishing", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, signal.SIG_IGN if "APP_IGNORE_TERM" in env else on_term)
stdin_data = sys.stdin.read()

if "APP_GRANDCHILD" in env:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(env["APP_GRANDCHILD"], "w") as f:
        f.write(str(child.pid))

if "APP_PRINT_EVERY" in env:
    def printer():
        n = 0
        while True:
            sys.stdout.write(f"tick {n}\n")  # one write: lines from two threads never interleave
            n += 1
            time.sleep(float(env["APP_PRINT_EVERY"]))
    threading.Thread(target=printer, daemon=True).start()

if "APP_READY_FILE" in env:
    def make_ready():
        time.sleep(float(env.get("APP_READY_DELAY", "0")))
        open(env["APP_READY_FILE"], "w").close()
    threading.Thread(target=make_ready, daemon=True).start()

if "APP_NEVER_LISTEN" in env:
    print("never listening", flush=True)
    while True:
        time.sleep(1)

time.sleep(float(env.get("APP_BIND_DELAY", "0")))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            late = time.monotonic() - START < float(env.get("APP_READY_DELAY", "0"))
            self._send(503 if late or sick.is_set() else 200, b"ok")
        elif self.path == "/sick":
            sick.set()
            self._send(200, b"sick")
        elif self.path == "/env":
            body = dict(os.environ, STDIN=stdin_data, CWD=os.getcwd())
            self._send(200, json.dumps(body).encode())
        else:
            self._send(200, f"hello from {os.getpid()}".encode())

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(env["PORT"])), Handler)
sys.stdout.write(f"listening on {env['PORT']}\n")
server.serve_forever()
'''

RUNNER = r'''
import asyncio, sys
from pathlib import Path
from wisp.clock import SystemClock
from wisp.runtime.base import InstanceSpec
from wisp.runtime.process import ProcessBackend

async def main():
    backend = ProcessBackend(Path(sys.argv[1]), SystemClock())
    spec = InstanceSpec(namespace="ns", revision="r1", command=[sys.executable, sys.argv[2]],
                        env={"APP_GRANDCHILD": sys.argv[3]})
    inst = await backend.start(spec)
    assert await backend.wait_ready(inst, 10)
    print(inst.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[ProcessBackend]:
    b = ProcessBackend(tmp_path / "data", SystemClock())
    yield b
    await b.close(grace=0.5)


def make_spec(app: Path, *, probe: ProbeSpec = ProbeSpec(), service: str = "svc",
              revision: str = "svc-00001", **env: str) -> InstanceSpec:
    return InstanceSpec(namespace="default", service=service, configuration="svc", revision=revision,
                        command=[sys.executable], args=[str(app)], env=env, readiness=probe,
                        termination_grace=2.0)


async def eventually(pred: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def get(inst: Instance, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://{inst.host}:{inst.port}{path}")


def alive(pid: int) -> bool:
    return reaper.proc_stat(pid) is not None


# ---- the environment contract ---------------------------------------------------------------


async def test_app_sees_port_k_vars_user_env_and_empty_stdin(backend: ProcessBackend, app: Path) -> None:
    inst = await backend.start(make_spec(app, FOO="bar", PORT="1"))
    assert await backend.wait_ready(inst, 10)
    env = (await get(inst, "/env")).json()
    assert env["PORT"] == str(inst.port)  # the contract wins over a user-set PORT
    assert (env["K_SERVICE"], env["K_CONFIGURATION"], env["K_REVISION"]) == ("svc", "svc", "svc-00001")
    assert env["FOO"] == "bar"
    assert env["STDIN"] == ""
    assert "PATH" in env


async def test_k_service_is_empty_without_a_service(backend: ProcessBackend, app: Path) -> None:
    inst = await backend.start(make_spec(app, service=""))
    assert await backend.wait_ready(inst, 10)
    env = (await get(inst, "/env")).json()
    assert env["K_SERVICE"] == ""


async def test_rootfs_sets_cwd_and_resolves_relative_command(backend: ProcessBackend, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "work").mkdir()
    (root / "app.py").write_text(APP)
    run = root / "bin" / "run"
    run.write_text(f"#!/bin/sh\nexec {sys.executable} \"$(dirname \"$0\")/../app.py\"\n")
    run.chmod(0o755)
    spec = InstanceSpec(namespace="default", revision="r1", command=["bin/run"], rootfs=root,
                        working_dir="/work")
    inst = await backend.start(spec)
    assert await backend.wait_ready(inst, 10), inst.last_log_lines()
    assert (await get(inst, "/env")).json()["CWD"] == str(root / "work")


# ---- readiness probes ---------------------------------------------------------------------------


def _probe_cases(tmp: str) -> list[tuple[ProbeSpec, dict[str, str]]]:
    marker = os.path.join(tmp, "ready-marker")
    cases = []
    for period in (0.0, 0.2):
        cases += [
            (ProbeSpec(period_seconds=period), {"APP_BIND_DELAY": "0.5"}),
            (ProbeSpec(kind="http", path="/ready", period_seconds=period), {"APP_READY_DELAY": "0.5"}),
            (ProbeSpec(kind="exec", command=("test", "-f", marker), period_seconds=period),
             {"APP_READY_FILE": marker, "APP_READY_DELAY": "0.5"}),
        ]
    return cases


@pytest.mark.parametrize("case", range(6), ids=["tcp", "http", "exec", "tcp-1s", "http-1s", "exec-1s"])
async def test_not_ready_before_the_probe_passes(backend: ProcessBackend, app: Path, tmp_path: Path,
                                                 case: int) -> None:
    probe, env = _probe_cases(str(tmp_path))[case]
    t0 = time.monotonic()
    inst = await backend.start(make_spec(app, probe=probe, **env))
    assert not await backend.wait_ready(inst, 0.3)
    assert inst.state is InstanceState.STARTING
    assert await backend.wait_ready(inst, 10)
    assert time.monotonic() - t0 >= 0.5
    assert (await get(inst, "/ready")).status_code == 200


async def test_ready_instance_turns_unready_after_failure_threshold(backend: ProcessBackend,
                                                                   app: Path) -> None:
    states: list[InstanceState] = []
    probe = ProbeSpec(kind="http", path="/ready", period_seconds=0.1, failure_threshold=2)
    inst = await backend.start(make_spec(app, probe=probe), on_change=lambda i: states.append(i.state))
    assert await backend.wait_ready(inst, 10)
    await get(inst, "/sick")
    await eventually(lambda: inst.state is InstanceState.UNREADY, 3)
    assert states == [InstanceState.READY, InstanceState.UNREADY]


# ---- failures ---------------------------------------------------------------------------------


class CountingBackend(ProcessBackend):
    """Records when each start happens, to observe the restart backoff."""

    starts: list[float]

    async def start(self, spec: InstanceSpec, **kw: object) -> Instance:
        self.starts = [*getattr(self, "starts", []), time.monotonic()]
        return await super().start(spec, **kw)  # type: ignore[arg-type]


async def test_crash_reports_exit_code_with_log_tail_and_restarts_with_backoff(
        tmp_path: Path, app: Path) -> None:
    backend = CountingBackend(tmp_path / "data", SystemClock())
    statuses: list[SupervisorStatus] = []
    sup = RevisionSupervisor(backend, make_spec(app, APP_EXIT_CODE="3"), SystemClock(),
                             progress_deadline=30, on_change=statuses.append)
    try:
        await sup.scale(1)
        await eventually(lambda: len(backend.starts) >= 4, 5)
        failure = sup.status.failure
        assert failure is not None and failure.reason == "ExitCode3"
        assert failure.message.startswith("Container failed with: ")
        assert "fatal: something broke" in failure.message and "line 14" in failure.message
        assert "line 0\n" not in failure.message  # only the last lines are quoted
        assert sup.status.last_exit_code == 3 and not sup.status.initial_scale_reached
        gaps = [b - a for a, b in zip(backend.starts, backend.starts[1:], strict=False)]
        assert gaps[0] >= 0.1 and gaps[2] >= 0.4 and gaps[2] > gaps[0]
    finally:
        await sup.close(0.5)
        await backend.close(0.5)


async def test_never_ready_revision_fails_with_progress_deadline(backend: ProcessBackend, app: Path) -> None:
    statuses: list[SupervisorStatus] = []
    sup = RevisionSupervisor(backend, make_spec(app, APP_NEVER_LISTEN="1"), SystemClock(),
                             progress_deadline=1.0, on_change=statuses.append)
    await sup.scale(1)
    pid = sup.instances[0].pid
    assert pid is not None
    await eventually(lambda: sup.status.failure is not None, 5)
    failure = sup.status.failure
    assert failure is not None
    assert failure.reason == "ProgressDeadlineExceeded"
    assert failure.message == "Initial scale was never achieved"
    await eventually(lambda: not backend.list() and not alive(pid), 5)
    assert sup.status.actual == 0 and sup.status.desired == 0
    await sup.close(0.5)


async def test_missing_command_exits_127_with_a_clear_log(backend: ProcessBackend, tmp_path: Path) -> None:
    spec = InstanceSpec(namespace="default", revision="r1", command=[str(tmp_path / "no-such-app")])
    inst = await backend.start(spec)
    assert not inst.alive and inst.exit_code == 127
    assert "executable file not found" in inst.last_log_lines(1)[0]
    assert inst.log_path.exists()


async def test_non_executable_command_exits_126(backend: ProcessBackend, tmp_path: Path) -> None:
    script = tmp_path / "app.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    inst = await backend.start(InstanceSpec(namespace="default", revision="r1", command=[str(script)]))
    assert inst.exit_code == 126
    assert "permission denied" in inst.last_log_lines(1)[0]


async def test_supervisor_reports_missing_command_as_exit_code_127(backend: ProcessBackend,
                                                                  tmp_path: Path) -> None:
    spec = InstanceSpec(namespace="default", revision="r1", command=["wisp-no-such-command-xyz"])
    sup = RevisionSupervisor(backend, spec, SystemClock(), progress_deadline=30, on_change=lambda s: None)
    await sup.scale(1)
    failure = sup.status.failure
    assert failure is not None and failure.reason == "ExitCode127"
    assert "wisp-no-such-command-xyz" in failure.message and "not found" in failure.message
    await sup.close(0.5)


# ---- stopping ---------------------------------------------------------------------------------


async def test_stop_lets_the_app_handle_sigterm(backend: ProcessBackend, app: Path) -> None:
    inst = await backend.start(make_spec(app))
    assert await backend.wait_ready(inst, 10)
    t0 = time.monotonic()
    assert await backend.stop(inst, 5) == 0
    assert time.monotonic() - t0 < 2
    assert "got SIGTERM, finishing" in inst.last_log_lines(3)
    assert backend.list() == [] and inst.state is InstanceState.EXITED


async def test_stop_sigkills_an_app_that_ignores_sigterm_after_grace(backend: ProcessBackend,
                                                                     app: Path) -> None:
    inst = await backend.start(make_spec(app, APP_IGNORE_TERM="1"))
    assert await backend.wait_ready(inst, 10)
    t0 = time.monotonic()
    assert await backend.stop(inst, 0.5) == 128 + signal.SIGKILL
    assert time.monotonic() - t0 >= 0.5
    assert inst.pid is not None and not alive(inst.pid)


async def test_stop_kills_the_whole_process_group(backend: ProcessBackend, app: Path,
                                                  tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    inst = await backend.start(make_spec(app, APP_GRANDCHILD=str(pidfile), APP_IGNORE_TERM="1"))
    assert await backend.wait_ready(inst, 10)
    grandchild = int(pidfile.read_text())
    assert alive(grandchild)
    await backend.stop(inst, 0.2)
    await eventually(lambda: not alive(grandchild), 3)


async def test_cleanup_stale_kills_what_a_crashed_wisp_left(tmp_path: Path, app: Path) -> None:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    data, pidfile = tmp_path / "data", tmp_path / "grandchild.pid"
    proc = subprocess.Popen([sys.executable, str(runner), str(data), str(app), str(pidfile)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        leader = int(proc.stdout.readline())
        grandchild = int(pidfile.read_text())
        assert len(reaper.read_records(reaper.records_dir(data))) == 1
    finally:
        proc.kill()
        proc.wait()
    # The instance dies with its wisp (PR_SET_PDEATHSIG); its own child needs the reaper.
    await eventually(lambda: not alive(leader), 3)
    assert alive(grandchild)
    backend = ProcessBackend(data, SystemClock())
    assert await backend.cleanup_stale() == 1
    await eventually(lambda: not alive(grandchild), 3)
    assert reaper.read_records(reaper.records_dir(data)) == []
    assert await backend.cleanup_stale() == 0


# ---- logs -------------------------------------------------------------------------------------


async def test_logs_are_captured_followable_and_outlive_the_instance(backend: ProcessBackend,
                                                                     app: Path) -> None:
    inst = await backend.start(make_spec(app, APP_PRINT_EVERY="0.05"))
    seen: list[str] = []
    async for line in inst.follow(SystemClock()):
        seen.append(line)
        if line.endswith("tick 3"):
            await backend.stop(inst, 2)
    texts = [line.split(" ", 1)[1] for line in seen]
    assert texts[-1] == "got SIGTERM, finishing"
    assert {"tick 0", "tick 1", "tick 2", "tick 3"} <= set(texts)
    assert all(line[:4].isdigit() and line[23] == "Z" for line in seen)  # timestamped
    assert tail(inst.log_path, 1) == seen[-1:]  # still there after exit


# ---- the supervisor on real processes -----------------------------------------------------------


async def test_supervisor_scales_real_instances_up_and_down(backend: ProcessBackend, app: Path) -> None:
    statuses: list[SupervisorStatus] = []
    sup = RevisionSupervisor(backend, make_spec(app), SystemClock(), progress_deadline=30,
                             on_change=statuses.append)
    await sup.scale(2)
    await eventually(lambda: sup.status.ready == 2, 10)
    assert sup.status.initial_scale_reached
    bodies = set()
    async with httpx.AsyncClient() as client:
        for host, port in sup.status.ready_endpoints:
            bodies.add((await client.get(f"http://{host}:{port}/")).text)
    assert len(bodies) == 2  # two distinct processes
    await sup.scale(1)
    assert len(sup.status.ready_endpoints) == 1
    await eventually(lambda: len(backend.list()) == 1, 5)
    await sup.close(1)
    assert backend.list() == []
    assert sup.status.actual == 0


async def test_cold_start_of_a_minimal_http_server(backend: ProcessBackend, tmp_path: Path) -> None:
    """From start() to ready for `python -m http.server` (p50 of 10); the number is in the report."""
    code = ("import os, sys, runpy; sys.argv = ['http.server', '--bind', '127.0.0.1', os.environ['PORT']];"
            "runpy.run_module('http.server', run_name='__main__')")
    spec = InstanceSpec(namespace="default", revision="cold", command=[sys.executable, "-c", code])
    times = []
    for _ in range(10):
        t0 = time.monotonic()
        inst = await backend.start(spec)
        assert await backend.wait_ready(inst, 10)
        times.append(time.monotonic() - t0)
        await backend.stop(inst, 1)
    p50 = statistics.median(times)
    print(f"cold start p50={p50 * 1000:.0f}ms max={max(times) * 1000:.0f}ms")
    assert p50 < 1.0
