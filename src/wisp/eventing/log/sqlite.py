"""The durable event log on SQLite: one file, one writer thread, group commit.

Why this shape:

* **One dedicated thread owns the connection** and all consumer state. The event loop never blocks
  on disk; every call becomes a job on a queue. There is no locking beyond the queue because only
  that thread touches the database or the in-memory cursors.
* **Group commit.** The thread drains every job that queued up while the previous transaction was
  committing and runs them all in one transaction, then resolves their futures. Many concurrent
  single-event appends therefore share one fsync, which is where the throughput comes from.
* **Durability.** WAL journal with `synchronous=FULL` by default: the WAL is fsynced at every
  commit, so an append that returned survives power loss, not just a process crash. With
  `synchronous="NORMAL"` a commit only reaches the OS page cache: it still survives a SIGKILL
  of wisp (the kernel writes the WAL out), but the last transactions may be lost if the *machine*
  crashes. NORMAL is offered for laptops; FULL is what the 202-after-durable-append promise means.
  Batches holding only acks/nacks/reads always commit with NORMAL (see `_set_sync_level`): a lost
  ack costs a redelivery, which at-least-once allows, and saves an fsync per ack.
* **Exclusive locking.** The file is locked for the lifetime of the log; a second process opening
  the same file fails fast instead of silently sharing cursors whose leases live in memory.

Schema: `streams` (head and trim watermark per stream), `records` (stream, offset, time, bytes),
`consumers` (cursor = every offset ≤ it is acked, ordered flag) and `pending` (per consumer and
offset above the cursor: nack attempts / retry time, or an out-of-order ack). Leases are not
stored, so after a restart every unacked record is due again — at-least-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from wisp.clock import Clock, SystemClock
from wisp.eventing.log.base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_MESSAGE_BYTES,
    Capabilities,
    ConsumerNotFound,
    EventLogError,
    LogClosedError,
    Record,
    Start,
    TemporaryLogError,
    check_sizes,
)
from wisp.eventing.log.state import ConsumerState, HeadWatcher

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams(
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
  head INTEGER NOT NULL DEFAULT 0, trimmed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records(
  stream_id INTEGER NOT NULL, off INTEGER NOT NULL, appended_at REAL NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY(stream_id, off));
CREATE TABLE IF NOT EXISTS consumers(
  stream_id INTEGER NOT NULL, name TEXT NOT NULL, cursor INTEGER NOT NULL, ordered INTEGER NOT NULL,
  PRIMARY KEY(stream_id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending(
  stream_id INTEGER NOT NULL, consumer TEXT NOT NULL, off INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, retry_at REAL NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(stream_id, consumer, off)) WITHOUT ROWID;
"""

_MAX_BATCH = 2048
_IN_CHUNK = 500


@dataclass
class _Stream:
    id: int
    head: int = 0
    trimmed: int = 0
    consumers: dict[str, ConsumerState] = field(default_factory=dict)


class _Store:
    """Synchronous storage logic; only ever called on the writer thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.streams: dict[str, _Stream] = {}
        self.dirty_heads: set[str] = set()
        self.dirty_cursors: set[tuple[str, str]] = set()

    # -- loading -------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild in-memory state from the file (at open, and after a failed transaction)."""
        self.streams = {name: _Stream(sid, head, trimmed) for sid, name, head, trimmed
                        in self.conn.execute("SELECT id, name, head, trimmed FROM streams")}
        by_id = {s.id: s for s in self.streams.values()}
        for sid, name, cursor, ordered in self.conn.execute(
                "SELECT stream_id, name, cursor, ordered FROM consumers"):
            by_id[sid].consumers[name] = ConsumerState(cursor=cursor, ordered=bool(ordered))
        for sid, consumer, off, attempts, retry_at, acked in self.conn.execute(
                "SELECT stream_id, consumer, off, attempts, retry_at, acked FROM pending"):
            state = by_id[sid].consumers[consumer]
            if acked:
                state.acked.add(off)
            else:
                state.attempts[off] = attempts
                state.retry_at[off] = retry_at
        self.dirty_heads.clear()
        self.dirty_cursors.clear()

    def heads(self) -> dict[str, int]:
        return {name: s.head for name, s in self.streams.items()}

    # -- streams ---------------------------------------------------------------------------
    def _stream(self, name: str) -> _Stream:
        s = self.streams.get(name)
        if s is None:
            cur = self.conn.execute("INSERT INTO streams(name) VALUES (?)", (name,))
            s = self.streams[name] = _Stream(int(cur.lastrowid or 0))
        return s

    def _consumer(self, stream: str, consumer: str) -> tuple[_Stream, ConsumerState]:
        s = self.streams.get(stream)
        state = s.consumers.get(consumer) if s else None
        if s is None or state is None:
            raise ConsumerNotFound(f"no consumer {consumer!r} on stream {stream!r}")
        return s, state

    def append(self, stream: str, records: Sequence[bytes], now: float) -> list[int]:
        s = self._stream(stream)
        first = s.head + 1
        self.conn.executemany(
            "INSERT INTO records(stream_id, off, appended_at, data) VALUES (?, ?, ?, ?)",
            [(s.id, first + i, now, data) for i, data in enumerate(records)])
        s.head += len(records)
        self.dirty_heads.add(stream)
        return list(range(first, s.head + 1))

    def delete_stream(self, stream: str) -> None:
        s = self.streams.pop(stream, None)
        if s is None:
            return
        for table in ("records", "consumers", "pending"):
            self.conn.execute(f"DELETE FROM {table} WHERE stream_id = ?", (s.id,))
        self.conn.execute("DELETE FROM streams WHERE id = ?", (s.id,))
        self.dirty_heads.discard(stream)

    def trim(self, stream: str) -> int:
        s = self.streams.get(stream)
        if s is None:
            return 0
        floor = min((c.cursor for c in s.consumers.values()), default=s.head)
        if floor <= s.trimmed:
            return 0
        cur = self.conn.execute("DELETE FROM records WHERE stream_id = ? AND off > ? AND off <= ?",
                                (s.id, s.trimmed, floor))
        s.trimmed = floor
        self.dirty_heads.add(stream)
        return cur.rowcount

    # -- consumers -------------------------------------------------------------------------
    def create_consumer(self, stream: str, consumer: str, start: Start, ordered: bool) -> None:
        s = self._stream(stream)
        if consumer in s.consumers:
            return
        cursor = s.head if start == "latest" else s.trimmed
        s.consumers[consumer] = ConsumerState(cursor=cursor, ordered=ordered)
        self.conn.execute("INSERT INTO consumers(stream_id, name, cursor, ordered) VALUES (?, ?, ?, ?)",
                          (s.id, consumer, cursor, int(ordered)))

    def delete_consumer(self, stream: str, consumer: str) -> None:
        s = self.streams.get(stream)
        if s is None or s.consumers.pop(consumer, None) is None:
            return
        self.conn.execute("DELETE FROM consumers WHERE stream_id = ? AND name = ?", (s.id, consumer))
        self.conn.execute("DELETE FROM pending WHERE stream_id = ? AND consumer = ?", (s.id, consumer))
        self.dirty_cursors.discard((stream, consumer))

    def read(self, stream: str, consumer: str, limit: int, now: float, lease: float) -> list[Record]:
        s, state = self._consumer(stream, consumer)
        offsets = state.due(s.head, now, limit)
        if not offsets:
            return []
        rows = self._fetch(s.id, offsets)
        state.lease(offsets, now + lease)
        return [Record(off, rows[off][1], state.attempts.get(off, 0), rows[off][0]) for off in offsets]

    def _fetch(self, sid: int, offsets: list[int]) -> dict[int, tuple[float, bytes]]:
        """Load records by offset: one range scan when contiguous, else IN-lists in chunks."""
        sql = "SELECT off, appended_at, data FROM records WHERE stream_id = ? AND "
        if offsets[-1] - offsets[0] + 1 == len(offsets):
            cur = self.conn.execute(sql + "off BETWEEN ? AND ?", (sid, offsets[0], offsets[-1]))
            return {off: (at, data) for off, at, data in cur}
        out: dict[int, tuple[float, bytes]] = {}
        for i in range(0, len(offsets), _IN_CHUNK):
            chunk = offsets[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for off, at, data in self.conn.execute(sql + f"off IN ({marks})", (sid, *chunk)):
                out[off] = (at, data)
        return out

    def ack(self, stream: str, consumer: str, offsets: Sequence[int]) -> None:
        s, state = self._consumer(stream, consumer)
        change = state.ack(offsets, s.head)
        if change.cursor_moved:
            self.dirty_cursors.add((stream, consumer))
        self.conn.executemany(
            "INSERT INTO pending(stream_id, consumer, off, acked) VALUES (?, ?, ?, 1) "
            "ON CONFLICT DO UPDATE SET acked = 1",
            [(s.id, consumer, off) for off in change.acked_above])

    def nack(self, stream: str, consumer: str, offset: int, retry_at: float) -> None:
        s, state = self._consumer(stream, consumer)
        attempts = state.nack(offset, retry_at, s.head)
        if attempts is not None:
            self.conn.execute(
                "INSERT INTO pending(stream_id, consumer, off, attempts, retry_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET attempts = excluded.attempts, retry_at = excluded.retry_at",
                (s.id, consumer, offset, attempts, retry_at))

    def lag(self, stream: str, consumer: str) -> int:
        s, state = self._consumer(stream, consumer)
        return state.lag(s.head)

    # -- end of a group commit ---------------------------------------------------------------
    def flush(self) -> dict[str, int]:
        """Write the watermarks batched during this transaction; returns heads that changed."""
        changed: dict[str, int] = {}
        for name in self.dirty_heads:
            s = self.streams.get(name)
            if s is not None:
                self.conn.execute("UPDATE streams SET head = ?, trimmed = ? WHERE id = ?",
                                  (s.head, s.trimmed, s.id))
                changed[name] = s.head
        for stream, consumer in self.dirty_cursors:
            s = self.streams.get(stream)
            state = s.consumers.get(consumer) if s else None
            if s is not None and state is not None:
                self.conn.execute("UPDATE consumers SET cursor = ? WHERE stream_id = ? AND name = ?",
                                  (state.cursor, s.id, consumer))
                self.conn.execute("DELETE FROM pending WHERE stream_id = ? AND consumer = ? AND off <= ?",
                                  (s.id, consumer, state.cursor))
        self.dirty_heads.clear()
        self.dirty_cursors.clear()
        return changed


@dataclass
class _Job:
    fn: Callable[[_Store], Any]
    future: asyncio.Future[Any]
    must_sync: bool = False
    """Appends must reach the disk before they are answered; cursor moves may lag behind."""
    result: Any = None
    error: BaseException | None = None


def _translate(exc: sqlite3.Error) -> EventLogError:
    """Map SQLite failures onto the port's error tree; lock contention is worth retrying."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return TemporaryLogError(f"sqlite event log busy: {exc}")
    return EventLogError(f"sqlite event log failed: {exc}")


class SqliteEventLog:
    """Durable event log in one SQLite file (see the module docstring for the design)."""

    def __init__(self, path: str | Path, *, clock: Clock | None = None,
                 synchronous: Synchronous = "FULL", busy_timeout: float = 2.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.capabilities = Capabilities(name="sqlite", durable=True, ordered=True,
                                         max_message_bytes=max_message_bytes)
        self.path = Path(path)
        self._clock = clock or SystemClock()
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._sync_level: str = synchronous
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher = HeadWatcher()
        self._closing = False
        self._broken: EventLogError | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._broken = None
        ready: asyncio.Future[dict[str, int]] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"wisp-eventlog:{self.path.name}")
        self._thread.start()
        try:
            heads = await ready
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise
        for stream, head in heads.items():
            self._watcher.set(stream, head)

    async def close(self) -> None:
        """Finish queued jobs, close the file and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._closing = True
        self._jobs.put(None)
        await asyncio.to_thread(thread.join)
        self._thread = None
        self._watcher.wake_all()

    async def __aenter__(self) -> SqliteEventLog:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- the writer thread -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_timeout)
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._sync_level = self._synchronous
        conn.executescript(_SCHEMA)
        return conn

    def _run(self, ready: asyncio.Future[dict[str, int]]) -> None:
        assert self._loop is not None
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            store = _Store(conn)
            store.load()
        except Exception as exc:  # settle `ready` whatever went wrong, or open() would hang
            if conn is not None:
                conn.close()
            error = _translate(exc) if isinstance(exc, sqlite3.Error) else EventLogError(
                f"cannot open sqlite event log {self.path}: {exc}")
            self._loop.call_soon_threadsafe(_settle_future, ready, None, error)
            return
        self._loop.call_soon_threadsafe(_settle_future, ready, store.heads(), None)
        try:
            self._serve(store)
        finally:
            conn.close()

    def _serve(self, store: _Store) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            stop = self._drain(batch)
            heads = self._commit(store, batch)
            self._deliver(batch, heads)
            if stop:
                return

    def _drain(self, batch: list[_Job]) -> bool:
        """Take every job already queued (up to a cap); True when the close sentinel was seen."""
        while len(batch) < _MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return False
            if job is None:
                return True
            batch.append(job)
        return False

    def _commit(self, store: _Store, batch: list[_Job]) -> dict[str, int]:
        """Run a batch in one transaction. Port errors fail one job; storage errors fail all."""
        conn = store.conn
        if self._broken is not None:
            self._fail(batch, self._broken)
            return {}
        try:
            self._set_sync_level(conn, any(job.must_sync for job in batch))
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                try:
                    job.result = job.fn(store)
                except EventLogError as exc:  # raised before the job wrote anything
                    job.error = exc
            heads = store.flush()
            conn.execute("COMMIT")
            return heads
        except sqlite3.Error as exc:
            self._abort(store, batch, _translate(exc))
        except Exception as exc:
            self._abort(store, batch, exc)
        return {}

    def _set_sync_level(self, conn: sqlite3.Connection, must_sync: bool) -> None:
        """Pay for an fsync only in transactions that carry appends.

        A batch of only acks, nacks and reads commits with synchronous=NORMAL: in WAL mode that
        is still safe against a process crash and is made durable by the next FULL commit or
        checkpoint. Losing an ack to a power cut only means a redelivery, which at-least-once
        allows; losing an acknowledged append would not be allowed, so appends keep FULL.
        """
        level = self._synchronous if must_sync else "NORMAL"
        if level != self._sync_level:
            conn.execute(f"PRAGMA synchronous = {level}")
            self._sync_level = level

    def _abort(self, store: _Store, batch: list[_Job], exc: BaseException) -> None:
        """Undo a failed batch and rebuild memory from the file so both agree again."""
        try:
            if store.conn.in_transaction:
                store.conn.execute("ROLLBACK")
            store.load()
        except sqlite3.Error as fatal:  # the file is unusable: fail every later call, loudly
            self._broken = EventLogError(f"sqlite event log {self.path} is unusable: {fatal}")
        self._fail(batch, exc)

    @staticmethod
    def _fail(batch: list[_Job], exc: BaseException) -> None:
        for job in batch:
            job.result, job.error = None, exc

    def _deliver(self, batch: list[_Job], heads: dict[str, int]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone; nobody is waiting any more
            self._loop.call_soon_threadsafe(self._settle, batch, heads)

    def _settle(self, batch: list[_Job], heads: dict[str, int]) -> None:
        for stream, head in heads.items():
            self._watcher.set(stream, head)
        for job in batch:
            _settle_future(job.future, job.result, job.error)

    async def _call(self, fn: Callable[[_Store], Any], *, must_sync: bool = False) -> Any:
        if self._thread is None or self._closing or self._loop is None:
            raise LogClosedError(f"sqlite event log {self.path} is not open")
        fut = self._loop.create_future()
        self._jobs.put(_Job(fn, fut, must_sync))
        return await fut

    # -- the port --------------------------------------------------------------------------
    async def append(self, stream: str, records: Sequence[bytes]) -> list[int]:
        check_sizes(records, self.capabilities.max_message_bytes)
        rows = [bytes(r) for r in records]
        if not rows:
            return []
        now = self._clock.now()
        result: list[int] = await self._call(lambda st: st.append(stream, rows, now), must_sync=True)
        return result

    async def create_consumer(self, stream: str, consumer: str, *, start: Start = "earliest",
                              ordered: bool = False) -> None:
        # synced: a lost `latest` consumer, re-created later, would silently skip events
        await self._call(lambda st: st.create_consumer(stream, consumer, start, ordered), must_sync=True)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        await self._call(lambda st: st.delete_consumer(stream, consumer))

    async def delete_stream(self, stream: str) -> None:
        await self._call(lambda st: st.delete_stream(stream))
        self._watcher.forget(stream)

    async def read(self, stream: str, consumer: str, max_records: int, *, now: float,
                   lease: float = DEFAULT_LEASE) -> list[Record]:
        result: list[Record] = await self._call(lambda st: st.read(stream, consumer, max_records, now, lease))
        return result

    async def ack(self, stream: str, consumer: str, offsets: Sequence[int]) -> None:
        wanted = list(offsets)
        await self._call(lambda st: st.ack(stream, consumer, wanted))

    async def nack(self, stream: str, consumer: str, offset: int, *, retry_at: float) -> None:
        await self._call(lambda st: st.nack(stream, consumer, offset, retry_at))

    async def head(self, stream: str) -> int:
        """The last durably appended offset (answered without a round trip to the thread)."""
        if self._thread is None:
            raise LogClosedError(f"sqlite event log {self.path} is not open")
        return self._watcher.get(stream)

    async def wait(self, stream: str, timeout: float, *, after: int | None = None) -> int:
        if self._thread is None:
            raise LogClosedError(f"sqlite event log {self.path} is not open")
        return await self._watcher.wait(stream, timeout, after)

    async def lag(self, stream: str, consumer: str) -> int:
        result: int = await self._call(lambda st: st.lag(stream, consumer))
        return result

    async def trim(self, stream: str) -> int:
        result: int = await self._call(lambda st: st.trim(stream))
        return result


def _settle_future(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():  # the caller was cancelled; the work is committed regardless
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
