"""What the two local backends (plain processes, zygote forks) share about one running child.

Both give every instance a loopback port, a rotating log fed from the child's output, an on-disk
record for the reaper, readiness probes, SIGTERM-then-SIGKILL to its process group and a final
EXITED with a shell-style code. They differ only in how the child comes to exist (spawned vs forked
by a zygote), how its exit is learnt (waitpid vs the zygote's report), where its output arrives,
and what else is let go when it exits (the guardian's watch, an unused zygote) — the hooks below.
Keeping the rest in one place is what keeps the two backends' contracts from drifting apart.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from wisp.clock import Clock
from wisp.runtime import reaper
from wisp.runtime.base import Instance, InstanceListener, InstanceSpec, InstanceState, ProbeSpec
from wisp.runtime.logs import LogWriter
from wisp.runtime.probes import Check, make_check, run_readiness

# How long to wait for the output pipe to drain after the process has exited.
PIPE_DRAIN_TIMEOUT = 1.0


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
class LocalHandle:
    """A backend's private handle on one instance: its log and the tasks that watch it."""

    instance: Instance
    writer: LogWriter
    tasks: set[asyncio.Task[None]] = field(default_factory=set, kw_only=True)
    prober: asyncio.Task[None] | None = field(default=None, kw_only=True)

    def own(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` as a task this handle keeps until it finishes (so close can cancel it)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


H = TypeVar("H", bound=LocalHandle)


class LocalBackend(abc.ABC, Generic[H]):
    """The start/stop/watch plumbing of a backend whose instances are local process groups."""

    def __init__(self, data_dir: Path, clock: Clock, *, host: str, log_max_bytes: int) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.host = host
        self._log_max = log_max_bytes
        self._ports = PortAllocator(host)
        self._records = reaper.records_dir(data_dir)
        self._running: dict[str, H] = {}

    # ---- what a backend supplies -------------------------------------------------------------

    @abc.abstractmethod
    async def stop(self, instance: Instance, grace: float) -> int | None:
        """Stop any instance this backend started (see `_stop_handle`)."""

    @abc.abstractmethod
    async def _exited(self, handle: H) -> int:
        """Wait for the child to exit; its shell-style exit code."""

    @abc.abstractmethod
    async def _pump(self, handle: H) -> None:
        """Copy the child's output into `handle.writer` until the output closes."""

    def _adopted(self, handle: H) -> None:
        """Called once the child runs and is recorded, before it is watched."""

    def _released(self, handle: H) -> None:
        """Called once the child has exited and is forgotten, before EXITED is reported."""

    def _readiness(self, check: Check, probe: ProbeSpec,
                   on_change: Callable[[bool], None]) -> Coroutine[Any, Any, None]:
        """The readiness loop; a backend whose children are up sooner may poll faster first."""
        return run_readiness(check, probe, self.clock, on_change)

    # ---- shared plumbing -------------------------------------------------------------------

    async def wait_ready(self, instance: Instance, timeout: float) -> bool:
        deadline = self.clock.monotonic() + timeout
        while not instance.ready:
            remaining = deadline - self.clock.monotonic()
            if not instance.alive or remaining <= 0:
                return False
            await first(instance.next_change(), self.clock.sleep(remaining))
        return True

    def _alive(self) -> list[Instance]:
        return [h.instance for h in self._running.values() if h.instance.alive]

    def _new_instance(self, spec: InstanceSpec, port: int, on_change: InstanceListener | None) -> Instance:
        instance_id = f"{spec.revision}-{secrets.token_hex(4)}"
        log_path = self.data_dir / "logs" / spec.namespace / spec.revision / f"{instance_id}.log"
        instance = Instance(instance_id, spec, host=self.host, port=port, pid=None,
                            started_at=self.clock.now(), log_path=log_path)
        if on_change is not None:
            instance.add_listener(on_change)
        return instance

    def _new_writer(self, instance: Instance) -> LogWriter:
        return LogWriter(instance.log_path, self.clock.now, self._log_max)

    def _launched(self, handle: H, pid: int, env: dict[str, str], cwd: str | None) -> None:
        """The child `pid` runs: record it, then watch its output and exit and probe readiness."""
        instance = handle.instance
        self._running[instance.id] = handle
        instance.pid = pid
        self._record(instance, pid)
        self._adopted(handle)
        handle.own(self._watch(handle))
        check = make_check(instance.spec.readiness, self.host, instance.port, env, cwd)
        handle.prober = handle.own(self._readiness(
            check, instance.spec.readiness, lambda ok: self._on_probe(instance, ok)))

    def _record(self, instance: Instance, pid: int) -> None:
        start = reaper.proc_start_time(pid) or 0
        reaper.write_record(self._records, reaper.InstanceRecord(
            id=instance.id, pid=pid, pgid=pid, start_time=start, namespace=instance.spec.namespace,
            revision=instance.spec.revision, owner_pid=os.getpid()))

    async def _stop_handle(self, handle: H, grace: float) -> int | None:
        """SIGTERM the instance's group, SIGKILL it if still alive after `grace`; its exit code."""
        instance = handle.instance
        if not instance.alive:
            return instance.exit_code
        instance._set_state(InstanceState.STOPPING, self.clock.now())
        if handle.prober is not None:
            handle.prober.cancel()
        signal_group(instance, signal.SIGTERM)
        if instance.alive:
            await first(instance.wait_exited(), self.clock.sleep(grace))
        if instance.alive:
            signal_group(instance, signal.SIGKILL)
        return await instance.wait_exited()

    async def _close_handles(self, grace: float) -> None:
        """Stop every listed instance, then cancel whatever still watches this backend's children."""
        await asyncio.gather(*(self.stop(i, grace) for i in self.list()))
        for handle in list(self._running.values()):
            for task in list(handle.tasks):
                task.cancel()
            await asyncio.gather(*handle.tasks, return_exceptions=True)

    async def _watch(self, handle: H) -> None:
        """Copy output to the log until the child exits, then clean up and report the exit."""
        instance = handle.instance
        pump = asyncio.ensure_future(self._pump(handle))
        try:
            code = await self._exited(handle)
            # Whatever the instance spawned goes with it, which also closes the pipe's last writers.
            signal_group(instance, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), PIPE_DRAIN_TIMEOUT)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            if handle.prober is not None:
                handle.prober.cancel()
            handle.writer.close()
            reaper.remove_record(self._records, instance.id)
            self._running.pop(instance.id, None)
            self._released(handle)
        instance._set_state(InstanceState.EXITED, self.clock.now(), code)

    def _on_probe(self, instance: Instance, ok: bool) -> None:
        state = InstanceState.READY if ok else InstanceState.UNREADY
        instance._set_state(state, self.clock.now())

    def list(self) -> list[Instance]:  # last: inside the class, `list` is this method from here on
        return self._alive()


def signal_group(instance: Instance, sig: signal.Signals) -> None:
    """Signal the instance's whole process group (it runs in its own session); gone is fine."""
    if instance.pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(instance.pid, sig)


async def first(*aws: Coroutine[Any, Any, object]) -> None:
    """Wait for the first of several coroutines; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
