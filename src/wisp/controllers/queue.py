"""A level-based work queue: keys, not events, with per-key ordering and retry backoff.

Like client-go's workqueue and kopf's per-object queues: a key that changes many times while it waits
is processed once; a key is never processed by two workers at once; a key that changes while it is
being processed runs again afterwards; failures retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from wisp.api.errors import Conflict
from wisp.clock import Clock

log = logging.getLogger("wisp.controllers")


class RequeueAfter(Exception):
    """Raised by a reconciler that wants to look at the key again after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"requeue after {delay}s")
        self.delay = delay


@dataclass
class _Backoff:
    base: float = 0.005
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * (2 ** max(0, failures - 1)))


class WorkQueue:
    """Runs `handler(key)` for each dirty key on `workers` tasks."""

    def __init__(self, name: str, handler: Callable[[Hashable], Awaitable[None]], clock: Clock,
                 workers: int = 4) -> None:
        self.name = name
        self._handler = handler
        self._clock = clock
        self._workers = workers
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._backoff = _Backoff()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: Hashable) -> None:
        """Mark a key dirty; cheap and idempotent, safe to call from synchronous store listeners."""
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._idle.clear()
        if key not in self._active:
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        async def later() -> None:
            await self._clock.sleep(delay)
            self.add(key)

        task = asyncio.get_running_loop().create_task(later())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(), name=f"{self.name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._timers]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._timers, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """For tests and benchmarks: wait until nothing is dirty or running."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _worker(self) -> None:
        while True:
            key = await self._ready.get()
            if key in self._active or key not in self._dirty:
                continue
            self._dirty.discard(key)
            self._active.add(key)
            try:
                await self._handler(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except RequeueAfter as req:
                self.add_after(key, req.delay)
            except Conflict:
                self.add(key)  # someone wrote in between: re-read and try again at once
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                log.exception("%s: reconciling %s failed (attempt %d)", self.name, key, failures)
                self.add_after(key, self._backoff.delay(failures))
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._ready.put_nowait(key)
                if not self._dirty and not self._active:
                    self._idle.set()
