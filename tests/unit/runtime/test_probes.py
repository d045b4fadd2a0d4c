"""Readiness thresholds and timing (pure, fake clock) and single checks over real loopback sockets."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest

from wisp.clock import FakeClock
from wisp.runtime.base import ProbeSpec
from wisp.runtime.probes import (
    AGGRESSIVE_INTERVAL,
    AGGRESSIVE_TIMEOUT,
    ReadinessTracker,
    exec_check,
    http_check,
    make_check,
    run_readiness,
    tcp_check,
)


def test_ready_after_success_threshold_consecutive_successes() -> None:
    t = ReadinessTracker(ProbeSpec(success_threshold=2))
    assert [t.observe(ok) for ok in (True, False, True, True)] == [None, None, None, True]
    assert t.ready


def test_unready_only_after_failure_threshold_consecutive_failures() -> None:
    t = ReadinessTracker(ProbeSpec(failure_threshold=3))
    t.observe(True)
    assert [t.observe(ok) for ok in (False, False, True, False, False, False)] == \
        [None, None, None, None, None, False]
    assert not t.ready


def test_aggressive_probing_until_ready_then_every_second() -> None:
    t = ReadinessTracker(ProbeSpec(period_seconds=0, timeout_seconds=5))
    assert (t.interval(), t.timeout()) == (AGGRESSIVE_INTERVAL, AGGRESSIVE_TIMEOUT)
    assert 0.01 <= AGGRESSIVE_INTERVAL <= 0.05 and AGGRESSIVE_TIMEOUT == 0.1
    t.observe(True)
    assert (t.interval(), t.timeout()) == (1.0, 5)


def test_periodic_probing_uses_the_given_period_and_timeout() -> None:
    t = ReadinessTracker(ProbeSpec(period_seconds=3, timeout_seconds=2))
    assert (t.interval(), t.timeout()) == (3, 2)
    t.observe(True)
    assert (t.interval(), t.timeout()) == (3, 2)


def test_exec_probe_keeps_its_own_timeout_even_when_aggressive() -> None:
    assert ReadinessTracker(ProbeSpec(kind="exec", timeout_seconds=1)).timeout() == 1


async def test_run_readiness_honours_initial_delay_and_reports_changes() -> None:
    clock = FakeClock()
    results = iter([False, True] + [True] * 3 + [False] * 3 + [True] * 100)
    attempts: list[float] = []
    changes: list[tuple[float, bool]] = []

    async def check(timeout: float) -> bool:
        attempts.append(clock.monotonic())
        return next(results)

    probe = ProbeSpec(period_seconds=2, initial_delay_seconds=5, failure_threshold=3)
    task = asyncio.ensure_future(run_readiness(check, probe, clock,
                                               lambda ok: changes.append((clock.monotonic(), ok))))
    await asyncio.sleep(0)
    for _ in range(40):
        await clock.advance(0.5)
    task.cancel()
    assert attempts[:3] == [5, 7, 9]
    assert changes[:2] == [(7, True), (19, False)]


async def test_a_check_that_hangs_counts_as_a_failure_after_its_timeout() -> None:
    changes: list[bool] = []
    calls = 0

    async def check(timeout: float) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)  # real time: asyncio.timeout cuts it at 0.1 s
        return True

    clock = FakeClock()
    task = asyncio.ensure_future(run_readiness(check, ProbeSpec(), clock, changes.append))
    await asyncio.sleep(0.3)
    await clock.advance(0.025)  # the retry interval after the failed attempt
    task.cancel()
    assert calls == 2 and changes == [True]


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[str, int, list[bytes]]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head)
        status = b"302 Found" if b"GET /moved" in head else (
            b"200 OK" if b"GET /ok" in head else b"503 Service Unavailable")
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield "127.0.0.1", port, requests
    server.close()
    await server.wait_closed()


async def test_http_check_accepts_200_to_399_only(http_server: tuple[str, int, list[bytes]]) -> None:
    host, port, requests = http_server
    assert await http_check(host, port, "/ok", headers=(("X-Probe", "1"),))
    assert await http_check(host, port, "/moved")
    assert not await http_check(host, port, "/fail")
    assert b"X-Probe: 1" in requests[0] and b"User-Agent: kube-probe/" in requests[0]


async def test_tcp_check_fails_on_a_closed_port(http_server: tuple[str, int, list[bytes]]) -> None:
    host, port, _ = http_server
    assert await tcp_check(host, port)
    with socket_closed() as closed, pytest.raises(OSError):
        await tcp_check(host, closed)


async def test_exec_check_uses_exit_status_env_and_timeout(tmp_path: object) -> None:
    env = {"WANT": "yes"}
    code = "import os, sys; sys.exit(0 if os.environ.get('WANT') == 'yes' else 1)"
    assert await exec_check([sys.executable, "-c", code], env, None, 5)
    assert not await exec_check([sys.executable, "-c", code], {}, None, 5)
    assert not await exec_check(["/no/such/probe"], env, None, 5)
    with pytest.raises(TimeoutError):
        await exec_check([sys.executable, "-c", "import time; time.sleep(30)"], env, None, 0.3)


async def test_make_check_targets_the_instance_port_by_default(
        http_server: tuple[str, int, list[bytes]]) -> None:
    host, port, _requests = http_server
    check = make_check(ProbeSpec(kind="http", path="/ok"), host, port, {}, None)
    assert await check(1.0)
    with socket_closed() as closed:
        other = make_check(ProbeSpec(kind="http", path="/ok", port=port), host, closed, {}, None)
        assert await other(1.0)  # an explicit probe port wins


class socket_closed:
    """A port number that nothing listens on for the duration of the block."""

    def __enter__(self) -> int:
        import socket
        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        return int(self._s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._s.close()
