"""The function runtime with real zygotes and forked instances on loopback sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wisp.clock import SystemClock
from wisp.runtime import reaper
from wisp.runtime.base import Instance, InstanceSpec, InstanceState
from wisp.runtime.function import FunctionBackend

pytestmark = pytest.mark.e2e

HANDLER = '''
import os, signal, time

async def handle(request):
    if request.path == "/boom":
        raise RuntimeError("kaboom from the function")
    if request.path == "/env":
        return {k: os.environ.get(k) for k in ("PORT", "K_SERVICE", "K_REVISION", "GREETING")}
    if request.path == "/proc":
        return {"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0), "cwd": os.getcwd()}
    if request.path == "/exit":
        os._exit(7)
    if request.path == "/ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return "ignoring"
    print("handled", request.path, flush=True)
    return "hello " + request.path
'''

STARLETTE = '''
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def home(request):
    return PlainTextResponse("starlette says hi")

async def boom(request):
    raise KeyError("starlette route failed")

app = Starlette(routes=[Route("/", home), Route("/boom", boom)])
'''


def fn_spec(code: Path, entry: str = "main:handle", *, deps: Path | None = None, revision: str = "fn-00001",
            env: dict[str, str] | None = None) -> InstanceSpec:
    argv = [sys.executable, "-m", "wisp.runtime.funcserver"]
    if deps is not None:
        argv += ["--deps", str(deps)]
    return InstanceSpec("default", revision, [*argv, entry], service="fn", configuration="fn",
                        working_dir=str(code), env=env or {}, termination_grace=5)


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "main.py").write_text(HANDLER)
    (folder / "web.py").write_text(STARLETTE)
    return folder


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[FunctionBackend]:
    b = FunctionBackend(tmp_path / "data", SystemClock())
    yield b
    await b.close(2)


async def get(instance: Instance, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"http://{instance.host}:{instance.port}{path}")


async def ready(backend: FunctionBackend, spec: InstanceSpec) -> Instance:
    instance = await backend.start(spec)
    assert await backend.wait_ready(instance, 10), instance.last_log_lines(20)
    return instance


async def test_instances_are_forked_from_a_zygote_and_keep_the_runtime_contract(
        backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code, env={"GREETING": "hi"}))
    zygote = await backend.zygote(None)
    assert instance.pid is not None and instance.pid != zygote.proc.pid
    assert (await get(instance, "/env")).json() == {"PORT": str(instance.port), "K_SERVICE": "fn",
                                                     "K_REVISION": "fn-00001", "GREETING": "hi"}
    proc = (await get(instance, "/proc")).json()
    assert proc["pid"] == proc["sid"] == proc["pgid"] == instance.pid  # its own session and group
    assert proc["cwd"] == str(code)
    assert (await get(instance, "/x")).text == "hello /x"
    # The zygote is its parent: the instance really is a fork, not a fresh interpreter.
    assert reaper.proc_stat(instance.pid) is not None
    assert Path(f"/proc/{instance.pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(zygote.proc.pid)
    assert await backend.stop(instance, 5) in (0, 143)
    assert not instance.alive and "handled /x" in instance.last_log_lines(5)


async def test_a_raising_function_answers_500_logs_the_error_and_keeps_serving(
        backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code))
    response = await get(instance, "/boom")
    assert response.status_code == 500 and "kaboom from the function" in response.text
    assert (await get(instance, "/still")).text == "hello /still"
    log = "\n".join(instance.last_log_lines(40))
    assert "RuntimeError: kaboom from the function" in log and "Traceback" in log


async def test_exit_codes_reach_the_supervisor(backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code))
    with pytest.raises(httpx.HTTPError):
        await get(instance, "/exit")
    assert await asyncio.wait_for(instance.wait_exited(), 5) == 7
    assert instance.state is InstanceState.EXITED and backend.list() == []


async def test_sigkill_after_the_grace_period(backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code))
    assert (await get(instance, "/ignore-term")).text == "ignoring"
    started = asyncio.get_running_loop().time()
    assert await backend.stop(instance, 0.3) == 137
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert reaper.proc_stat(instance.pid or 0) is None


async def test_a_bad_entrypoint_exits_with_the_reason_in_the_log(backend: FunctionBackend, code: Path) -> None:
    instance = await backend.start(fn_spec(code, "missing_module:handle"))
    assert await asyncio.wait_for(instance.wait_exited(), 10) == 1
    assert any("cannot import 'missing_module'" in line for line in instance.last_log_lines(20))


async def test_a_starlette_app_is_served_from_the_zygote(backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code, "web:app"))
    assert (await get(instance, "/")).text == "starlette says hi"
    assert (await get(instance, "/boom")).status_code == 500
    assert (await get(instance, "/")).text == "starlette says hi"
    log = "\n".join(instance.last_log_lines(40))
    assert "KeyError: 'starlette route failed'" in log and "Traceback" in log
    assert instance.id in {i.id for i in backend.list()}


async def test_an_import_that_starts_threads_falls_back_to_a_plain_process_and_says_so(
        backend: FunctionBackend, code: Path, tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "threadylib.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    instance = await ready(backend, fn_spec(code, deps=deps))
    assert (await get(instance, "/y")).text == "hello /y"
    first = instance.last_log_lines(50)[0]
    assert "plain process" in first and "threads are running" in first
    # The verdict is remembered: the next instance falls back without another zygote attempt.
    again = await ready(backend, fn_spec(code, deps=deps, revision="fn-00002"))
    assert "plain process" in again.last_log_lines(50)[0]


async def test_a_dead_zygote_takes_its_instances_along_and_is_replaced(
        backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code))
    zygote = await backend.zygote(None)
    os.kill(zygote.proc.pid, signal.SIGKILL)
    assert await asyncio.wait_for(instance.wait_exited(), 5) == 137
    fresh = await ready(backend, fn_spec(code))
    assert (await get(fresh, "/z")).text == "hello /z"
    assert (await backend.zygote(None)).proc.pid != zygote.proc.pid


async def test_close_stops_instances_and_zygotes(tmp_path: Path, code: Path) -> None:
    backend = FunctionBackend(tmp_path / "data", SystemClock())
    instances = [await ready(backend, fn_spec(code)) for _ in range(3)]
    zygote_pid = (await backend.zygote(None)).proc.pid
    await backend.close(2)
    assert all(not i.alive for i in instances)
    assert all(reaper.proc_stat(pid) is None for pid in [zygote_pid, *(i.pid or 0 for i in instances)])
    assert reaper.read_records(reaper.records_dir(tmp_path / "data")) == []


async def test_owned_zygotes_stay_warm_until_released_and_unused(backend: FunctionBackend, code: Path) -> None:
    spec = fn_spec(code)
    assert await backend.prewarm(spec, owner="default/a") and await backend.prewarm(spec, owner="default/b")
    zygote = await backend.zygote(None)
    assert backend.owners("none") == {"default/a", "default/b"}
    instance = await ready(backend, spec)

    backend.release("default/a")
    backend.release("default/b")
    await asyncio.sleep(0.2)
    # Nobody owns it, but a running instance is its child: stopping it now would kill the instance.
    assert zygote.proc.returncode is None and (await get(instance, "/still")).text == "hello /still"

    await backend.stop(instance, 5)
    assert await asyncio.wait_for(zygote.proc.wait(), 5) is not None
    for _ in range(100):  # its record goes right after it has been reaped
        if not [r for r in reaper.read_records(reaper.records_dir(backend.data_dir)) if r.id.startswith("zygote-")]:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the stopped zygote's record was left behind")
    # A new owner gets a fresh zygote.
    assert await backend.prewarm(spec, owner="default/c")
    assert (await backend.zygote(None)).proc.pid != zygote.proc.pid


async def test_a_zygote_nobody_owned_is_kept_for_direct_starts(backend: FunctionBackend, code: Path) -> None:
    instance = await ready(backend, fn_spec(code))
    zygote = await backend.zygote(None)
    await backend.stop(instance, 5)
    backend.release("never-owned")
    await asyncio.sleep(0.1)
    assert zygote.proc.returncode is None and await backend.zygote(None) is zygote
