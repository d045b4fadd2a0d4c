"""Readiness probing: single tcp/http/exec checks, the pure threshold logic, and the loop.

Semantics follow Knative's queue-proxy: with `periodSeconds: 0` an instance that is not yet ready
is probed aggressively (every 25 ms, 100 ms per attempt) so a cold start is noticed within a few
milliseconds; once ready it is re-checked every second (or every period) and leaves rotation after
`failureThreshold` consecutive failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wisp.clock import Clock
from wisp.runtime.base import ProbeSpec

AGGRESSIVE_INTERVAL = 0.025
AGGRESSIVE_TIMEOUT = 0.1
AGGRESSIVE_READY_PERIOD = 1.0
USER_AGENT = "kube-probe/wisp"

Check = Callable[[float], Awaitable[bool]]
"""One probe attempt, given its timeout in seconds; True means success."""


@dataclass
class ReadinessTracker:
    """Consecutive-success/failure counting for one instance; pure, driven by `observe`."""

    probe: ProbeSpec
    ready: bool = False
    successes: int = 0
    failures: int = 0

    def observe(self, ok: bool) -> bool | None:
        """Record one attempt; return the new readiness if it changed, else None."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.ready and self.successes >= max(1, self.probe.success_threshold):
                self.ready = True
                return True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.ready and self.failures >= max(1, self.probe.failure_threshold):
                self.ready = False
                return False
        return None

    def interval(self) -> float:
        """Seconds to wait before the next attempt."""
        if self.probe.aggressive:
            return AGGRESSIVE_READY_PERIOD if self.ready else AGGRESSIVE_INTERVAL
        return self.probe.period_seconds

    def timeout(self) -> float:
        # An exec probe spawns a process, which rarely fits in 100 ms; it keeps its own timeout.
        if self.probe.aggressive and not self.ready and self.probe.kind != "exec":
            return AGGRESSIVE_TIMEOUT
        return self.probe.timeout_seconds if self.probe.timeout_seconds > 0 else 1.0


async def run_readiness(check: Check, probe: ProbeSpec, clock: Clock,
                        on_change: Callable[[bool], None]) -> None:
    """Probe forever (until cancelled), reporting each readiness change through `on_change`."""
    tracker = ReadinessTracker(probe)
    if probe.initial_delay_seconds > 0:
        await clock.sleep(probe.initial_delay_seconds)
    while True:
        changed = tracker.observe(await _attempt(check, tracker.timeout()))
        if changed is not None:
            on_change(changed)
        await clock.sleep(tracker.interval())


async def _attempt(check: Check, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            return await check(timeout)
    except (TimeoutError, OSError, ssl.SSLError):
        return False


async def tcp_check(host: str, port: int) -> bool:
    """Something accepts connections on host:port."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_check(host: str, port: int, path: str, *, scheme: str = "http",
                     headers: tuple[tuple[str, str], ...] = ()) -> bool:
    """A GET answers with a status in 200-399 (as kubelet's httpGet probe)."""
    ctx: ssl.SSLContext | None = None
    if scheme == "https":  # kubelet does not verify certificates either
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    try:
        names = {k.lower() for k, _ in headers}
        lines = [f"GET {path or '/'} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {host}:{port}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        lines += [f"{k}: {v}" for k, v in headers]
        lines += ["Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def exec_check(command: list[str], env: dict[str, str], cwd: str | None, timeout: float) -> bool:
    """The command exits 0 within `timeout`; on timeout its whole process group is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
    except OSError:
        return False
    try:
        async with asyncio.timeout(timeout):
            return await proc.wait() == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


def make_check(probe: ProbeSpec, host: str, port: int, env: dict[str, str], cwd: str | None) -> Check:
    """The attempt function for an instance at host:port (`probe.port` 0 → the instance port).

    An exec probe also requires the port to accept connections, as Knative's queue-proxy adds a
    TCP check next to kubelet's exec probe: traffic must never reach a closed port.
    """
    target_host = probe.host or host
    target_port = probe.port or port
    if probe.kind == "http":
        return lambda _t: http_check(target_host, target_port, probe.path,
                                     scheme=probe.scheme, headers=probe.headers)
    if probe.kind == "exec":
        async def both(timeout: float) -> bool:
            return await tcp_check(host, port) and await exec_check(list(probe.command), env, cwd, timeout)
        return both
    return lambda _t: tcp_check(target_host, target_port)
