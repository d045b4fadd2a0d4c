"""PingSource: a CloudEvent on every tick of a cron schedule (spec §2.8).

Each Ready PingSource gets one runner task on the injected clock. A runner computes the next tick
after `max(now, last fired tick)`, sleeps until then, **records the tick before sending**, and
then posts the event (with the source retry policy) in a task of its own so a slow sink never
delays the next tick.

Guarantees, and what they cost:

* A tick is never sent twice: the last fired tick per source (by uid) is persisted in
  `<data-dir>/sources.db` before the event goes out, so a restart resumes after it. The price is
  that a crash between recording and sending loses that one tick (at-most-once, like Knative).
* Ticks that fall while `wisp serve` is down are **not replayed**: a restarted runner starts at
  the first tick after "now", exactly as Knative's adapter does after a restart.
* Events: type `dev.knative.sources.ping`, source `/apis/v1/namespaces/<ns>/pingsources/<name>`,
  a fresh UUID id, `time` = the scheduled tick, `ceOverrides` extensions applied.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from wisp.clock import Clock
from wisp.eventing.cloudevents import CloudEvent
from wisp.eventing.cron import Schedule, parse_schedule

__all__ = [
    "PING_TYPE",
    "MemoryTicks",
    "PingScheduler",
    "PingSpec",
    "SqliteTicks",
    "TickStore",
    "ping_event",
    "ping_source_uri",
    "ping_spec",
]

log = logging.getLogger("wisp.eventing.ping")

PING_TYPE = "dev.knative.sources.ping"


def ping_source_uri(namespace: str, name: str) -> str:
    return f"/apis/v1/namespaces/{namespace}/pingsources/{name}"


@dataclass(frozen=True)
class PingSpec:
    """A resolved PingSource: what to send, where, and when."""

    namespace: str
    name: str
    uid: str
    schedule: Schedule
    sink: str
    data: bytes | None = None
    content_type: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)


def ping_spec(obj: dict[str, Any], sink: str, extensions: dict[str, str]) -> PingSpec:
    """Build the runner spec from a (validated) PingSource; raises `InvalidSchedule` if it is not."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    schedule = parse_schedule(str(spec.get("schedule") or "* * * * *"), spec.get("timezone") or None)
    data: bytes | None = None
    if spec.get("dataBase64"):
        data = base64.b64decode(str(spec["dataBase64"]))
    elif spec.get("data") is not None:
        data = str(spec["data"]).encode("utf-8")
    return PingSpec(meta["namespace"], meta["name"], str(meta.get("uid") or meta["name"]), schedule, sink,
                    data, spec.get("contentType") or None, dict(extensions))


def ping_event(spec: PingSpec, tick: float, event_id: str | None = None) -> CloudEvent:
    """The event for one tick (pure apart from the random id when none is given)."""
    when = datetime.fromtimestamp(tick, tz=UTC)
    content_type = spec.content_type or ("text/plain" if spec.data is not None else None)
    return CloudEvent.create(PING_TYPE, ping_source_uri(spec.namespace, spec.name), spec.data,
                             id=event_id or str(uuid.uuid4()), time=when, datacontenttype=content_type,
                             extensions=spec.extensions)


class TickStore(Protocol):
    """Where the last fired tick of each source survives restarts."""

    def last(self, uid: str) -> float | None: ...

    def record(self, uid: str, tick: float) -> None: ...

    def forget(self, uid: str) -> None: ...


class MemoryTicks:
    """A TickStore for tests and the memory event backend (forgets on restart)."""

    def __init__(self) -> None:
        self._ticks: dict[str, float] = {}

    def last(self, uid: str) -> float | None:
        return self._ticks.get(uid)

    def record(self, uid: str, tick: float) -> None:
        self._ticks[uid] = tick

    def forget(self, uid: str) -> None:
        self._ticks.pop(uid, None)


class SqliteTicks:
    """Last fired ticks in a small SQLite table (one row per PingSource uid)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS ping_ticks (uid TEXT PRIMARY KEY, tick REAL NOT NULL)")

    def last(self, uid: str) -> float | None:
        row = self._db.execute("SELECT tick FROM ping_ticks WHERE uid = ?", (uid,)).fetchone()
        return float(row[0]) if row else None

    def record(self, uid: str, tick: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO ping_ticks(uid, tick) VALUES (?, ?)", (uid, tick))

    def forget(self, uid: str) -> None:
        self._db.execute("DELETE FROM ping_ticks WHERE uid = ?", (uid,))

    def close(self) -> None:
        self._db.close()


Emit = Callable[[PingSpec, CloudEvent], Awaitable[object]]


class PingScheduler:
    """One runner task per PingSource key; `ensure` starts or updates it, `remove` stops it."""

    def __init__(self, clock: Clock, ticks: TickStore, emit: Emit, *, max_sends: int = 256) -> None:
        self._clock = clock
        self._ticks = ticks
        self._emit = emit
        self._runners: dict[tuple[str, str], tuple[PingSpec, asyncio.Task[None]]] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._max_sends = max_sends

    def spec(self, key: tuple[str, str]) -> PingSpec | None:
        entry = self._runners.get(key)
        return entry[0] if entry else None

    def ensure(self, spec: PingSpec) -> None:
        """Run `spec` (restarting the runner only when something it uses changed)."""
        key = (spec.namespace, spec.name)
        current = self._runners.get(key)
        if current is not None and current[0] == spec:
            return
        self._cancel(key)
        task = asyncio.create_task(self._run(spec), name=f"ping:{spec.namespace}/{spec.name}")
        self._runners[key] = (spec, task)

    def remove(self, key: tuple[str, str], *, forget_uid: str | None = None) -> None:
        self._cancel(key)
        if forget_uid:
            self._ticks.forget(forget_uid)

    def _cancel(self, key: tuple[str, str]) -> None:
        entry = self._runners.pop(key, None)
        if entry is not None:
            entry[1].cancel()

    async def close(self) -> None:
        tasks = [task for _, task in self._runners.values()] + list(self._sends)
        self._runners.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def next_tick(self, spec: PingSpec) -> float:
        """The next tick to fire: after now, and after the last one fired (never twice)."""
        last = self._ticks.last(spec.uid)
        now = self._clock.now()
        return spec.schedule.next_after(max(now, last) if last is not None else now)

    async def _run(self, spec: PingSpec) -> None:
        while True:
            tick = self.next_tick(spec)
            await self._clock.sleep(max(0.0, tick - self._clock.now()))
            self._ticks.record(spec.uid, tick)
            self._send(spec, ping_event(spec, tick))

    def _send(self, spec: PingSpec, event: CloudEvent) -> None:
        if len(self._sends) >= self._max_sends:
            log.warning("%s/pingsource/%s: too many ticks still being delivered; tick dropped",
                        spec.namespace, spec.name)
            return

        async def send() -> None:
            try:
                await self._emit(spec, event)
            except Exception:
                log.exception("%s/pingsource/%s: sending a tick failed", spec.namespace, spec.name)

        task = asyncio.create_task(send())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
