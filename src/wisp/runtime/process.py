"""The process backend: each instance is a plain child process on a loopback port.

Every instance runs in its own session (so one signal reaches everything it spawned), dies with
wisp (PR_SET_PDEATHSIG), has stdin at EOF and its merged stdout/stderr in a rotating log file, and
is recorded on disk so a later wisp can reap what a crashed one left behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
from wisp.runtime.local import LocalBackend, LocalHandle
from wisp.runtime.local import PortAllocator as PortAllocator  # re-exported: it began here
from wisp.runtime.logs import DEFAULT_MAX_BYTES, LogWriter

log = logging.getLogger("wisp.runtime.process")

PR_SET_PDEATHSIG = 1
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

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


@dataclass
class _Running(LocalHandle):
    """The backend's private handle on one instance."""

    proc: asyncio.subprocess.Process


class ProcessBackend(LocalBackend[_Running]):
    """Runs instances as local processes. `data_dir` holds `run/instances/` and `logs/`."""

    name = "process"

    def __init__(self, data_dir: Path, clock: Clock, *, host: str = "127.0.0.1",
                 log_max_bytes: int = DEFAULT_MAX_BYTES, guard_groups: bool = False) -> None:
        """`guard_groups` adds the watchdog that kills instances' process groups the moment wisp
        dies (see `guardian`); without it, what the apps spawned waits for `cleanup_stale`."""
        super().__init__(data_dir, clock, host=host, log_max_bytes=log_max_bytes)
        self._guardian = GroupGuardian() if guard_groups else None

    # ---- the RuntimeBackend protocol -------------------------------------------------------

    async def start(self, spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        port = self._ports.allocate()
        instance = self._new_instance(spec, port, on_change)
        writer = self._new_writer(instance)
        env = base_env(spec, port)
        cwd = resolve_cwd(spec)
        proc = await self._spawn(spec, env, cwd, writer)
        if isinstance(proc, int):
            writer.close()
            instance._set_state(InstanceState.EXITED, self.clock.now(), proc)
            return instance
        self._launched(_Running(instance, writer, proc), proc.pid, env, cwd)
        return instance

    async def stop(self, instance: Instance, grace: float) -> int | None:
        running = self._running.get(instance.id)
        if running is None:
            return instance.exit_code
        return await self._stop_handle(running, grace)

    async def cleanup_stale(self) -> int:
        keep = set(self._running)
        return await asyncio.to_thread(reaper.cleanup_stale, self._records, keep)

    async def close(self, grace: float) -> None:
        await self._close_handles(grace)
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

    def _adopted(self, running: _Running) -> None:
        if self._guardian is not None:
            self._guardian.watch(running.proc.pid)  # the app's own children die with wisp too

    def _released(self, running: _Running) -> None:
        if self._guardian is not None:
            self._guardian.forget(running.proc.pid)

    async def _exited(self, running: _Running) -> int:
        return exit_status(await running.proc.wait())

    async def _pump(self, running: _Running) -> None:
        stream = running.proc.stdout
        assert stream is not None
        while chunk := await stream.read(65536):
            running.writer.feed(chunk)


def _spawn_error(e: OSError, cwd: str | None) -> str:
    if cwd is not None and e.filename == cwd:
        return f"working directory {cwd!r} does not exist"
    if isinstance(e, FileNotFoundError):
        return "executable file not found"
    if isinstance(e, PermissionError):
        return "permission denied (not executable)"
    return e.strerror or str(e)
