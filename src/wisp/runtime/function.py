"""The function backend: instances are forks of a warm zygote, one zygote per dependency set.

A function image runs `python -m wisp.runtime.funcserver [--deps DIR] [--signature S] module:attr`
(see `wisp.functions.builder`). The process backend runs that command as it is; this backend
recognises it and, instead of starting a new interpreter, asks a zygote that has already imported
the server, the frameworks and the function's dependencies to fork an instance. The instance keeps
the runtime contract of every backend: PORT and K_* env, its own session and process group, output
in the instance log, readiness probes, SIGTERM then SIGKILL, and its exit code.

When a zygote cannot be used (an import left threads running, the zygote died or cannot start, the
command is not a function server) the instance starts as a plain process, and its log says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from wisp.clock import Clock
from wisp.runtime import reaper
from wisp.runtime.base import Instance, InstanceListener, InstanceSpec, ProbeSpec
from wisp.runtime.local import LocalBackend, LocalHandle
from wisp.runtime.logs import DEFAULT_MAX_BYTES, LogWriter
from wisp.runtime.probes import AGGRESSIVE_TIMEOUT, Check, run_readiness
from wisp.runtime.process import (
    ProcessBackend,
    _child_setup,
    base_env,
    resolve_cwd,
)
from wisp.runtime.zygote import MAX_MESSAGE, decode, encode

log = logging.getLogger("wisp.runtime.function")

SERVER_MODULE = "wisp.runtime.funcserver"
DEPS_ID_FILE = ".wisp-deps-id"  # written by the builder: the dependency layer's identity
ZYGOTE_START_TIMEOUT = 30.0
EXIT_ZYGOTE_LOST = 137  # what an instance reports when its zygote vanished (it was SIGKILLed)
# A fork is serving ~10 ms after the request: the usual 25 ms aggressive probe period would more
# than double a scale-from-zero. Until the first success, tcp/http probes run this often instead
# (a refused loopback connect costs a few µs), for at most FAST_PROBE_WINDOW seconds.
FAST_PROBE_INTERVAL = 0.001
FAST_PROBE_WINDOW = 1.0


@dataclass(frozen=True)
class FunctionLaunch:
    """What the zygote needs to fork one instance, parsed from the instance's argv."""

    entrypoint: str
    signature: str = "http"
    deps: Path | None = None


def parse_launch(spec: InstanceSpec, cwd: str | None) -> FunctionLaunch | None:
    """`… -m wisp.runtime.funcserver [--deps D] [--signature S] ENTRY` → a launch; else None."""
    argv = spec.argv
    if len(argv) < 3 or "python" not in os.path.basename(argv[0]) or argv[1:3] != ["-m", SERVER_MODULE]:
        return None
    rest, options, positional = argv[3:], {"--deps": "", "--signature": "http"}, []
    while rest:
        item = rest.pop(0)
        name, eq, value = item.partition("=")
        if name in options:
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            options[name] = value
        elif item.startswith("-"):
            return None  # an option we do not understand: let the real server handle it
        else:
            positional.append(item)
    if len(positional) != 1 or options["--signature"] not in ("http", "cloudevent"):
        return None
    deps = Path(cwd or ".", options["--deps"]).resolve() if options["--deps"] else None
    return FunctionLaunch(positional[0], options["--signature"], deps)


def deps_key(deps: Path | None) -> str:
    """Zygotes are shared by every revision with the same dependency layer (not the same path)."""
    if deps is None:
        return "none"
    try:
        return "id-" + (deps / DEPS_ID_FILE).read_text().strip()
    except OSError:
        return "path-" + hashlib.sha256(str(deps).encode()).hexdigest()[:16]


@runtime_checkable
class Prewarming(Protocol):
    """A backend that can get ready for a revision before its first instance is asked for."""

    async def prewarm(self, spec: InstanceSpec, *, owner: str | None = None) -> bool: ...

    def release(self, owner: str) -> None: ...


class ZygoteUnavailable(Exception):
    """This zygote cannot fork instances; the message goes into the instance's log."""


@dataclass
class ZygoteHandle:
    """wisp's side of one zygote process: the control socket and who is waiting for what."""

    key: str
    proc: asyncio.subprocess.Process
    sock: socket.socket
    hello: dict[str, Any] = field(default_factory=dict)
    replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    exits: dict[int, asyncio.Future[int]] = field(default_factory=dict)
    forked: set[int] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    next_id: int = 0
    lost: bool = False

    def exit_future(self, pid: int) -> asyncio.Future[int]:
        fut = self.exits.get(pid)
        if fut is None:
            fut = self.exits[pid] = asyncio.get_running_loop().create_future()
            if self.lost:
                fut.set_result(EXIT_ZYGOTE_LOST)
        return fut

    async def fork(self, launch: FunctionLaunch, env: dict[str, str], cwd: str, port: int,
                   log_fd: int) -> int:
        """Ask for one instance; returns its pid. The zygote owns `log_fd`'s copy from here on."""
        if self.lost:
            raise ZygoteUnavailable("the zygote has exited")
        self.next_id += 1
        rid = self.next_id
        reply = self.replies[rid] = asyncio.get_running_loop().create_future()
        message = {"type": "fork", "id": rid, "entrypoint": launch.entrypoint,
                   "signature": launch.signature, "cwd": cwd, "env": env, "port": port}
        try:
            await _send_with_fds(self.sock, encode(message), [log_fd])
            answer = await asyncio.wait_for(reply, ZYGOTE_START_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ZygoteUnavailable(f"the zygote did not answer: {exc or 'timeout'}") from None
        finally:
            self.replies.pop(rid, None)
        if answer["type"] != "forked":
            raise ZygoteUnavailable(str(answer.get("message", "fork failed")))
        pid = int(answer["pid"])
        self.forked.add(pid)
        return pid

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(self.sock, MAX_MESSAGE):
                self.dispatch(decode(data))
        except (OSError, ValueError) as exc:
            log.warning("zygote %s: control socket failed: %s", self.key, exc)
        finally:
            self.mark_lost()

    def dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "hello":
            self.hello = message
            waiter = self.replies.get(0)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif kind == "exit":
            fut = self.exit_future(int(message["pid"]))
            if not fut.done():
                fut.set_result(int(message["code"]))
        elif kind in ("forked", "error"):
            fut_reply = self.replies.get(int(message.get("id") or -1))
            if fut_reply is not None and not fut_reply.done():
                fut_reply.set_result(message)

    def mark_lost(self) -> None:
        """The zygote is gone: its children died with it (PDEATHSIG); nobody can reap them now."""
        self.lost = True
        for fut in self.replies.values():
            if not fut.done():
                fut.set_result({"type": "error", "message": "the zygote exited"})
        for pid in self.forked:
            exited = self.exit_future(pid)
            if not exited.done():
                exited.set_result(EXIT_ZYGOTE_LOST)

    async def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


async def _send_with_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    """send_fds on a non-blocking socket: a datagram this small only waits if the zygote is stuck."""
    for _ in range(1000):
        try:
            socket.send_fds(sock, [data], fds)
            return
        except BlockingIOError:
            await asyncio.sleep(0.005)
    raise OSError("the zygote's control socket stays full")


@dataclass
class _Forked(LocalHandle):
    """The backend's handle on one forked instance; `read_fd` is our end of its output pipe."""

    zygote: ZygoteHandle
    read_fd: int


class FunctionBackend(LocalBackend[_Forked]):
    """Runs function instances as zygote forks; everything else (and every fallback) as processes."""

    name = "function"

    def __init__(self, data_dir: Path, clock: Clock, *, host: str = "127.0.0.1",
                 log_max_bytes: int = DEFAULT_MAX_BYTES, python: str = sys.executable,
                 preload: tuple[str, ...] = ()) -> None:
        super().__init__(data_dir, clock, host=host, log_max_bytes=log_max_bytes)
        self.python = python
        self.preload = preload
        self._plain = ProcessBackend(data_dir, clock, host=host, log_max_bytes=log_max_bytes)
        self._zygotes: dict[str, ZygoteHandle] = {}
        self._starting: dict[str, asyncio.Task[ZygoteHandle]] = {}
        self._unusable: dict[str, str] = {}
        # Who keeps which zygote warm (owner, e.g. a revision key → zygote key). A zygote that had
        # owners is stopped once the last one is released and its last instance has exited.
        self._owners: dict[str, str] = {}
        self._owned: set[str] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    # ---- the RuntimeBackend protocol -------------------------------------------------------

    async def start(self, spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        cwd = resolve_cwd(spec) or os.getcwd()
        launch = parse_launch(spec, cwd)
        if launch is None:
            return await self._plain.start(spec, on_change=on_change)
        try:
            zygote = await self.zygote(launch.deps)
        except ZygoteUnavailable as exc:
            return await self._fallback(spec, str(exc), on_change)
        port = self._ports.allocate()
        env = base_env(spec, port)
        instance = self._new_instance(spec, port, on_change)
        writer = self._new_writer(instance)
        read_fd, write_fd = os.pipe()
        try:
            pid = await zygote.fork(launch, env, cwd, port, write_fd)
        except ZygoteUnavailable as exc:
            os.close(read_fd)
            writer.close()
            return await self._fallback(spec, str(exc), on_change)
        finally:
            os.close(write_fd)
        self._launched(_Forked(instance, writer, zygote, read_fd), pid, env, cwd)
        return instance

    async def stop(self, instance: Instance, grace: float) -> int | None:
        forked = self._running.get(instance.id)
        if forked is None:
            return await self._plain.stop(instance, grace)
        return await self._stop_handle(forked, grace)

    def list(self) -> list[Instance]:
        return self._alive() + self._plain.list()

    async def cleanup_stale(self) -> int:
        keep = set(self._running) | {i.id for i in self._plain.list()} | {f"zygote-{k}" for k in self._zygotes}
        return await asyncio.to_thread(reaper.cleanup_stale, self._records, keep)

    async def close(self, grace: float) -> None:
        await self._close_handles(grace)
        await self._plain.close(grace)
        for pending in self._starting.values():
            pending.cancel()
        await asyncio.gather(*self._starting.values(), return_exceptions=True)
        zygotes, self._zygotes = list(self._zygotes.values()), {}
        for zygote in zygotes:
            await self._stop_zygote(zygote)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    # ---- zygotes ---------------------------------------------------------------------------

    async def zygote(self, deps: Path | None) -> ZygoteHandle:
        """The warm zygote for this dependency folder, started (once) if needed.

        Call it ahead of need (e.g. when a revision is created) so the first instance forks at once.
        """
        key = deps_key(deps)
        if key in self._unusable:
            raise ZygoteUnavailable(self._unusable[key])
        current = self._zygotes.get(key)
        if current is not None and not current.lost:
            return current
        if current is not None:  # it died: reap it and start a fresh one
            del self._zygotes[key]
            await current.close()
        starting = self._starting.get(key)
        if starting is None:
            starting = self._starting[key] = asyncio.ensure_future(self._spawn_zygote(key, deps))
            starting.add_done_callback(lambda _: self._starting.pop(key, None))
        handle = await asyncio.shield(starting)
        if handle.hello.get("unforkable"):
            # Decided once per dependency set: the same imports would start the same threads.
            self._unusable[key] = str(handle.hello["unforkable"])
            raise ZygoteUnavailable(self._unusable[key])
        return handle

    async def prewarm(self, spec: InstanceSpec, *, owner: str | None = None) -> bool:
        """Start the zygote `spec` will need; True if instances of it will be forked.

        With an `owner` (a revision key) the zygote is kept warm until `release(owner)`; zygotes
        nobody owns any more are stopped, as an idle zygote holds the memory of every import.
        The owner is recorded before the first await, so a `release` that follows always sees it.
        """
        launch = parse_launch(spec, resolve_cwd(spec) or os.getcwd())
        if launch is None:
            return False
        if owner is not None:
            key = deps_key(launch.deps)
            self._owners[owner] = key
            self._owned.add(key)
        try:
            await self.zygote(launch.deps)
        except ZygoteUnavailable:
            return False
        return True

    def release(self, owner: str) -> None:
        """`owner` no longer needs its zygote; stop the zygote if nothing else uses it."""
        key = self._owners.pop(owner, None)
        if key is not None:
            self._retire_if_unused(key)

    def owners(self, key: str) -> set[str]:
        """The owners keeping the zygote for dependency key `key` warm."""
        return {owner for owner, k in self._owners.items() if k == key}

    def _retire_if_unused(self, key: str) -> None:
        """Stop an owned zygote with no owner and no live instance left (in the background)."""
        if key not in self._owned or self.owners(key):
            return
        zygote = self._zygotes.get(key)
        if zygote is None or any(f.zygote is zygote for f in self._running.values()):
            return  # not started yet (its start checks again), or instances still need it
        del self._zygotes[key]
        self._owned.discard(key)
        log.info("zygote %s: no revision uses it any more; stopping it", key)
        task = asyncio.ensure_future(self._stop_zygote(zygote))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _stop_zygote(self, zygote: ZygoteHandle) -> None:
        await zygote.close()
        reaper.remove_record(self._records, f"zygote-{zygote.key}")

    async def _spawn_zygote(self, key: str, deps: Path | None) -> ZygoteHandle:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log_path = self.data_dir / "logs" / "zygotes" / f"{key}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.python, "-m", "wisp.runtime.zygote", "--fd", str(theirs.fileno())]
        if deps is not None:
            argv += ["--deps", str(deps)]
        if self.preload:
            argv += ["--preload", ",".join(self.preload)]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        env["PYTHONUNBUFFERED"] = "1"
        try:
            with open(log_path, "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", env=env,
                    pass_fds=[theirs.fileno()], start_new_session=True,
                    preexec_fn=_child_setup(os.getpid()))
        except OSError as exc:
            ours.close()
            raise ZygoteUnavailable(f"cannot start a zygote: {exc}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        handle = ZygoteHandle(key, proc, ours)
        return await self._await_hello(handle, log_path)

    async def _await_hello(self, handle: ZygoteHandle, log_path: Path) -> ZygoteHandle:
        hello = handle.replies[0] = asyncio.get_running_loop().create_future()
        handle.reader = asyncio.ensure_future(handle.read_loop())
        try:
            message = await asyncio.wait_for(hello, ZYGOTE_START_TIMEOUT)
        except TimeoutError:
            message = {"type": "error", "message": "timed out"}
        finally:
            handle.replies.pop(0, None)
        if message["type"] != "hello":
            await handle.close()
            tail = " | ".join(line for line in _tail_text(log_path) if line)
            raise ZygoteUnavailable(f"the zygote failed to start ({message.get('message')}): {tail}")
        if message.get("failed"):
            log.info("zygote %s could not preload %s", handle.key, ", ".join(message["failed"]))
        if not message.get("unforkable"):
            self._zygotes[handle.key] = handle
            self._record_zygote(handle)
            self._retire_if_unused(handle.key)  # its owners may have gone while it started
        else:
            await handle.close()
        return handle

    # ---- instances -------------------------------------------------------------------------

    async def _fallback(self, spec: InstanceSpec, reason: str, on_change: InstanceListener | None) -> Instance:
        """A plain process; the server prints `reason` as the first line of the instance log."""
        log.info("%s/%s: starting a plain process: %s", spec.namespace, spec.revision, reason)
        env = {**spec.env, "WISP_FUNC_FALLBACK": reason}
        return await self._plain.start(replace(spec, env=env), on_change=on_change)

    def _record_zygote(self, handle: ZygoteHandle) -> None:
        pid = handle.proc.pid
        reaper.write_record(self._records, reaper.InstanceRecord(
            id=f"zygote-{handle.key}", pid=pid, pgid=pid, start_time=reaper.proc_start_time(pid) or 0,
            namespace="", revision="", owner_pid=os.getpid()))

    def _released(self, forked: _Forked) -> None:
        self._retire_if_unused(forked.zygote.key)

    async def _exited(self, forked: _Forked) -> int:
        assert forked.instance.pid is not None
        return await forked.zygote.exit_future(forked.instance.pid)

    async def _pump(self, forked: _Forked) -> None:
        await _pump_fd(forked.read_fd, forked.writer)

    def _readiness(self, check: Check, probe: ProbeSpec,
                   on_change: Callable[[bool], None]) -> Coroutine[Any, Any, None]:
        return _probe_readiness(check, probe, self.clock, on_change)


async def _probe_readiness(check: Check, probe: ProbeSpec, clock: Clock,
                           on_change: Callable[[bool], None]) -> None:
    """`run_readiness`, after a fast first phase that notices a fresh fork within a millisecond."""
    if probe.aggressive and probe.initial_delay_seconds <= 0 and probe.kind in ("tcp", "http"):
        deadline = clock.monotonic() + FAST_PROBE_WINDOW
        while clock.monotonic() < deadline and not await _attempt(check):
            await clock.sleep(FAST_PROBE_INTERVAL)
    await run_readiness(check, probe, clock, on_change)  # its first attempt succeeds at once


async def _attempt(check: Check) -> bool:
    try:
        async with asyncio.timeout(AGGRESSIVE_TIMEOUT):
            return await check(AGGRESSIVE_TIMEOUT)
    except (TimeoutError, OSError):
        return False


async def _pump_fd(fd: int, writer: LogWriter) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                os.fdopen(fd, "rb", buffering=0))
    try:
        while chunk := await reader.read(65536):
            writer.feed(chunk)
    finally:
        transport.close()


def _tail_text(path: Path, n: int = 3) -> list[str]:
    try:
        return path.read_text(errors="replace").strip().splitlines()[-n:]
    except OSError:
        return []
