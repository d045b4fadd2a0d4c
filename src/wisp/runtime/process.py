"""The process backend: each instance is a plain child process on a loopback port.

Every instance runs in its own session (so one signal reaches everything it spawned), dies with
wisp (PR_SET_PDEATHSIG), has stdin at EOF and its merged stdout/stderr in a rotating log file, and
is recorded on disk so a later wisp can reap what a crashed one left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisp.clock import Clock
from wisp.runtime import reaper
from wisp.runtime.base import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    Instance,
    InstanceListener,
    InstanceSpec,
    InstanceState,
)
from wisp.runtime.guardian import GroupGuardian
from wisp.runtime.logs import DEFAULT_MAX_BYTES, LogWriter
from wisp.runtime.probes import make_check, run_readiness

log = logging.getLogger("wisp.runtime.process")

PR_SET_PDEATHSIG = 1
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# How long to wait for the output pipe to drain after the process has exited.
PIPE_DRAIN_TIMEOUT = 1.0

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: die with wisp, even if wisp died already."""
    def setup() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)
    return setup


def exit_status(returncode: int) -> int:
    """A shell-style exit code: asyncio's -N for 'killed by signal N' becomes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def base_env(spec: InstanceSpec, port: int) -> dict[str, str]:
    """A minimal inherited environment, then the user's, then the runtime contract's variables."""
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"  # so Python apps' logs show up as they are written
    env.update(spec.env)
    env.update(spec.contract_env(port))
    return env


def resolve_cwd(spec: InstanceSpec) -> str | None:
    if spec.rootfs is None:
        return spec.working_dir
    if spec.working_dir:
        return str(spec.rootfs / spec.working_dir.lstrip("/"))
    return str(spec.rootfs)


def resolve_argv(spec: InstanceSpec) -> list[str]:
    """Paths in the argv refer to the image: relative ones (and absolute ones present in the image)
    resolve inside `rootfs`; bare names go through PATH."""
    argv = spec.argv
    if spec.rootfs is None or not argv or "/" not in argv[0]:
        return argv
    inside = spec.rootfs / argv[0].lstrip("/")
    if not argv[0].startswith("/") or inside.exists():
        return [str(inside), *argv[1:]]
    return argv


class PortAllocator:
    """Free loopback ports by bind-to-0; recently handed-out ports are skipped so two instances
    starting together never get the same one. (If the app still loses a race to another program,
    it exits with EADDRINUSE and the supervisor's restart picks a new port.)"""

    def __init__(self, host: str, remember: int = 256) -> None:
        self.host = host
        self._recent: deque[int] = deque(maxlen=remember)

    def allocate(self) -> int:
        for _ in range(32):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((self.host, 0))
                port = int(s.getsockname()[1])
            if port not in self._recent:
                self._recent.append(port)
                return port
        raise OSError("no free port found")


@dataclass
class _Running:
    """The backend's private handle on one instance."""

    instance: Instance
    proc: asyncio.subprocess.Process
    writer: LogWriter
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    prober: asyncio.Task[None] | None = None


class ProcessBackend:
    """Runs instances as local processes. `data_dir` holds `run/instances/` and `logs/`."""

    name = "process"

    def __init__(self, data_dir: Path, clock: Clock, *, host: str = "127.0.0.1",
                 log_max_bytes: int = DEFAULT_MAX_BYTES, guard_groups: bool = False) -> None:
        """`guard_groups` adds the watchdog that kills instances' process groups the moment wisp
        dies (see `guardian`); without it, what the apps spawned waits for `cleanup_stale`."""
        self.data_dir = data_dir
        self.clock = clock
        self.host = host
        self._log_max = log_max_bytes
        self._ports = PortAllocator(host)
        self._records = reaper.records_dir(data_dir)
        self._running: dict[str, _Running] = {}
        self._guardian = GroupGuardian() if guard_groups else None

    # ---- the RuntimeBackend protocol -------------------------------------------------------

    async def start(self, spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        instance_id = f"{spec.revision}-{secrets.token_hex(4)}"
        log_path = self.data_dir / "logs" / spec.namespace / spec.revision / f"{instance_id}.log"
        port = self._ports.allocate()
        instance = Instance(instance_id, spec, host=self.host, port=port, pid=None,
                            started_at=self.clock.now(), log_path=log_path)
        if on_change is not None:
            instance.add_listener(on_change)
        writer = LogWriter(log_path, self.clock.now, self._log_max)
        env = base_env(spec, port)
        cwd = resolve_cwd(spec)
        proc = await self._spawn(spec, env, cwd, writer)
        if isinstance(proc, int):
            writer.close()
            instance._set_state(InstanceState.EXITED, self.clock.now(), proc)
            return instance
        running = _Running(instance, proc, writer)
        self._running[instance_id] = running
        instance.pid = proc.pid
        self._record(instance, proc.pid)
        if self._guardian is not None:
            self._guardian.watch(proc.pid)  # the app's own children die with wisp too
        self._own(running, self._watch(running))
        check = make_check(spec.readiness, self.host, port, env, cwd)
        running.prober = self._own(running, run_readiness(
            check, spec.readiness, self.clock, lambda ok: self._on_probe(instance, ok)))
        return instance

    async def stop(self, instance: Instance, grace: float) -> int | None:
        running = self._running.get(instance.id)
        if running is None or not instance.alive:
            return instance.exit_code
        instance._set_state(InstanceState.STOPPING, self.clock.now())
        if running.prober is not None:
            running.prober.cancel()
        self._signal_group(instance, signal.SIGTERM)
        if not await self._exited_within(instance, grace):
            self._signal_group(instance, signal.SIGKILL)
        return await instance.wait_exited()

    async def wait_ready(self, instance: Instance, timeout: float) -> bool:
        deadline = self.clock.monotonic() + timeout
        while not instance.ready:
            remaining = deadline - self.clock.monotonic()
            if not instance.alive or remaining <= 0:
                return False
            await _first(instance.next_change(), self.clock.sleep(remaining))
        return True

    def list(self) -> list[Instance]:
        return [r.instance for r in self._running.values() if r.instance.alive]

    async def cleanup_stale(self) -> int:
        keep = set(self._running)
        return await asyncio.to_thread(reaper.cleanup_stale, self._records, keep)

    async def close(self, grace: float) -> None:
        await asyncio.gather(*(self.stop(i, grace) for i in self.list()))
        for running in list(self._running.values()):
            for task in list(running.tasks):
                task.cancel()
            await asyncio.gather(*running.tasks, return_exceptions=True)
        if self._guardian is not None:
            self._guardian.close()

    # ---- internals -------------------------------------------------------------------------

    async def _spawn(self, spec: InstanceSpec, env: dict[str, str], cwd: str | None,
                     writer: LogWriter) -> asyncio.subprocess.Process | int:
        """Start the process; on failure write the reason to the log and return a shell-style
        exit code (127 not found, 126 not executable) instead of raising into the controller."""
        argv = resolve_argv(spec)
        if not argv:
            writer.write_line("wisp: no command given")
            return EXIT_NOT_FOUND
        try:
            return await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, preexec_fn=_child_setup(os.getpid()))
        except OSError as e:
            writer.write_line(f"wisp: cannot start {argv[0]!r}: {_spawn_error(e, cwd)}")
            return EXIT_NOT_FOUND if isinstance(e, FileNotFoundError) else EXIT_NOT_EXECUTABLE

    def _record(self, instance: Instance, pid: int) -> None:
        start = reaper.proc_start_time(pid) or 0
        reaper.write_record(self._records, reaper.InstanceRecord(
            id=instance.id, pid=pid, pgid=pid, start_time=start, namespace=instance.spec.namespace,
            revision=instance.spec.revision, owner_pid=os.getpid()))

    def _own(self, running: _Running, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        running.tasks.add(task)
        task.add_done_callback(running.tasks.discard)
        return task

    async def _watch(self, running: _Running) -> None:
        """Copy output to the log until the process exits, then clean up and report the exit."""
        proc, instance = running.proc, running.instance
        assert proc.stdout is not None
        pump = asyncio.ensure_future(_pump(proc.stdout, running.writer))
        try:
            code = exit_status(await proc.wait())
            # Whatever the instance spawned goes with it, which also closes the pipe's last writers.
            self._signal_group(instance, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), PIPE_DRAIN_TIMEOUT)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            if running.prober is not None:
                running.prober.cancel()
            running.writer.close()
            reaper.remove_record(self._records, instance.id)
            if self._guardian is not None:
                self._guardian.forget(proc.pid)
            self._running.pop(instance.id, None)
        instance._set_state(InstanceState.EXITED, self.clock.now(), code)

    def _on_probe(self, instance: Instance, ok: bool) -> None:
        state = InstanceState.READY if ok else InstanceState.UNREADY
        instance._set_state(state, self.clock.now())

    def _signal_group(self, instance: Instance, sig: signal.Signals) -> None:
        if instance.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(instance.pid, sig)

    async def _exited_within(self, instance: Instance, grace: float) -> bool:
        if instance.alive:
            await _first(instance.wait_exited(), self.clock.sleep(grace))
        return not instance.alive


async def _pump(stream: asyncio.StreamReader, writer: LogWriter) -> None:
    while chunk := await stream.read(65536):
        writer.feed(chunk)


async def _first(*aws: Coroutine[Any, Any, object]) -> None:
    """Wait for the first of several coroutines; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _spawn_error(e: OSError, cwd: str | None) -> str:
    if cwd is not None and e.filename == cwd:
        return f"working directory {cwd!r} does not exist"
    if isinstance(e, FileNotFoundError):
        return "executable file not found"
    if isinstance(e, PermissionError):
        return "permission denied (not executable)"
    return e.strerror or str(e)
