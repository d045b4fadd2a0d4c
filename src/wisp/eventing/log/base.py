"""The event log port: what a broker needs from storage, and nothing more.

A broker appends each accepted event to its *stream* and answers 202 only once `append` has
returned (the record is durable if the backend says so). Every Trigger is an independent
*consumer* of that stream with its own cursor. The port is deliberately small (kombu-style), so
SQLite, memory, NATS JetStream, RabbitMQ or Redis Streams can each implement it and pass the one
contract suite in `tests/contract/test_event_log.py`.

The contract every backend honours:

* `append(stream, records) -> offsets` — offsets are per stream, start at 1, increase by one per
  record and are never reused (not even after `trim`). One call is atomic. The stream is created
  on first use. When `capabilities.durable` is true, the records survive a process crash once
  the call has returned.
* `create_consumer(stream, consumer, start="earliest"|"latest", ordered=False)` — idempotent; a
  second call with the same name changes nothing. `latest` starts after the current head.
* `read(stream, consumer, max_records, now=…, lease=…)` — the consumer's *due* records in offset
  order: not acked, not leased, and not delayed by a nack past `now`. Returned records are leased
  until `now + lease`; they are not returned again until acked, nacked, the lease expires, or the
  process restarts (leases are never persisted, which is what makes delivery at-least-once).
  An *ordered* consumer never skips an unacked record: `read` returns a prefix of the unacked
  sequence and stops at the first record that is leased or delayed, so with `max_records=1` it has
  exactly one event in flight, in order. An unordered consumer skips blocked records; the caller
  bounds its in-flight count through `max_records`.
* `ack(stream, consumer, offsets)` — done; acks may arrive out of order. Acking an offset that is
  already acked or trimmed is a no-op; acking beyond the head raises `InvalidOffset`.
* `nack(stream, consumer, offset, retry_at=…)` — releases the lease, `attempts += 1`, and the
  record is not due before `retry_at` (wall-clock seconds, the same scale as `now`).
* `wait(stream, timeout, after=None) -> head` — returns as soon as the stream's head passes
  `after` (default: the head at call time), or after `timeout` seconds. Read the head *before*
  reading records and pass it as `after` to avoid a lost wake-up.
* `lag(stream, consumer)` — unacked records. `trim(stream)` — delete records every consumer has
  acked; returns how many were deleted.

`Record.attempts` counts nacks, i.e. failed delivery attempts the consumer recorded; a crash
between read and ack does not count as an attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

Start = Literal["earliest", "latest"]

DEFAULT_LEASE = 30.0
"""Seconds a read record stays invisible to its consumer before it is handed out again."""

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class EventLogError(Exception):
    """Base of every error an event log raises."""


class LogClosedError(EventLogError):
    """The log was used before `open()` or after `close()`."""


class ConsumerNotFound(EventLogError):
    """The consumer (or its stream) does not exist."""


class InvalidOffset(EventLogError):
    """An ack or nack named an offset the stream never handed out."""


class RecordTooLarge(EventLogError):
    """A record exceeds `capabilities.max_message_bytes`; nothing of the append was stored."""


class TemporaryLogError(EventLogError):
    """The storage is briefly unavailable (locked, disconnected); the same call may succeed later."""


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record as a consumer sees it."""

    offset: int
    data: bytes
    attempts: int
    appended_at: float


@dataclass(frozen=True)
class Capabilities:
    """What a backend promises, so callers can adapt instead of guessing.

    `retryable_errors` lists the exception types after which the same call may be retried
    (the broker answers 503 + Retry-After at ingress instead of 500).
    """

    name: str
    durable: bool
    ordered: bool = True
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    retryable_errors: tuple[type[BaseException], ...] = field(default=(TemporaryLogError,))

    def is_retryable(self, exc: BaseException) -> bool:
        """True when `exc` is transient for this backend."""
        return isinstance(exc, self.retryable_errors)


@runtime_checkable
class EventLog(Protocol):
    """The storage port every eventing backend implements (see the module docstring)."""

    capabilities: Capabilities

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, stream: str, records: Sequence[bytes]) -> list[int]: ...

    async def create_consumer(self, stream: str, consumer: str, *, start: Start = "earliest",
                              ordered: bool = False) -> None: ...

    async def delete_consumer(self, stream: str, consumer: str) -> None: ...

    async def delete_stream(self, stream: str) -> None: ...

    async def read(self, stream: str, consumer: str, max_records: int, *, now: float,
                   lease: float = DEFAULT_LEASE) -> list[Record]: ...

    async def ack(self, stream: str, consumer: str, offsets: Sequence[int]) -> None: ...

    async def nack(self, stream: str, consumer: str, offset: int, *, retry_at: float) -> None: ...

    async def head(self, stream: str) -> int: ...

    async def wait(self, stream: str, timeout: float, *, after: int | None = None) -> int: ...

    async def lag(self, stream: str, consumer: str) -> int: ...

    async def trim(self, stream: str) -> int: ...

    async def __aenter__(self) -> EventLog: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


def check_sizes(records: Sequence[bytes], limit: int) -> None:
    """Reject an append before anything is stored, so one call stays all-or-nothing."""
    for i, data in enumerate(records):
        if len(data) > limit:
            raise RecordTooLarge(f"record {i} is {len(data)} bytes; this log accepts at most {limit}")
