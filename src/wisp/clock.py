"""Injected time: every time-dependent piece takes a Clock so tests can drive time exactly."""

from __future__ import annotations

import asyncio
import calendar
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time and sleeping, behind one seam."""

    def now(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when a test calls `advance`; sleepers wake in deadline order."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall0 = start
        self._t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._wall0 + self._t

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + max(0.0, seconds), next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline and letting it run."""
        target = self._t + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._t = max(self._t, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._t = target
        for _ in range(5):
            await asyncio.sleep(0)


def rfc3339(ts: float) -> str:
    """Kubernetes timestamp form: UTC, whole seconds, `Z` suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_rfc3339(timestamp: str | None) -> float | None:
    """Seconds since the epoch for a Kubernetes timestamp (`rfc3339`'s form), None if unreadable."""
    try:
        return float(calendar.timegm(time.strptime(timestamp or "", "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def age(timestamp: str | None, now: float) -> str:
    """How long ago an RFC 3339 timestamp was, as kubectl prints it: `42s`, `5m`, `3h`, `2d`."""
    then = parse_rfc3339(timestamp)
    if then is None:
        return ""
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
