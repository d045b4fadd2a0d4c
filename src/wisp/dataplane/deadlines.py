"""Coarse request deadlines: one timer per tick for all requests instead of one per request.

A per-request ``loop.call_later`` + ``cancel`` costs about 2 µs on uvloop — a noticeable share of
the proxy's per-request budget — while revision timeouts are counted in seconds. Requests are
therefore put in buckets of ``resolution`` seconds; a single timer runs while any bucket is
non-empty and expires whole buckets. A deadline never fires early and at most one tick late.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class DeadlineWheel:
    """Buckets of expiry callbacks keyed by tick number."""

    __slots__ = ("_buckets", "_handle", "_last", "_loop", "resolution")

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = 0.05) -> None:
        self._loop = loop
        self.resolution = resolution
        self._buckets: dict[int, dict[object, Callable[[], None]]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._last = math.floor(loop.time() / resolution)

    def add(self, delay: float, key: object, callback: Callable[[], None]) -> int:
        """Call ``callback`` once ``delay`` seconds have passed unless ``remove``d; returns the bucket."""
        tick = math.ceil((self._loop.time() + delay) / self.resolution)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
        bucket[key] = callback
        if self._handle is None:
            self._schedule()
        return tick

    def remove(self, tick: int, key: object) -> None:
        """Forget a deadline (the request finished in time)."""
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[tick]

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def _schedule(self) -> None:
        self._handle = self._loop.call_later(self.resolution, self._tick)

    def _tick(self) -> None:
        self._handle = None
        now = math.floor(self._loop.time() / self.resolution)
        due = [t for t in self._buckets if t <= now] if len(self._buckets) < now - self._last else [
            t for t in range(self._last, now + 1) if t in self._buckets
        ]
        self._last = now
        for tick in sorted(due):
            for callback in list(self._buckets.pop(tick, {}).values()):
                callback()
        if self._buckets:
            self._schedule()

    def close(self) -> None:
        """Stop the timer and drop every pending deadline."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._buckets.clear()
