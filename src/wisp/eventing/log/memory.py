"""The in-memory event log: fast, honest about losing everything when the process exits.

Useful for tests and for `eventing.backend: memory` on a laptop where at-most-once is acceptable
(the same trade-off as Knative's InMemoryChannel). It implements the full port, including leases,
nacks and ordered consumers, so code written against it behaves the same on a durable backend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

from wisp.clock import Clock, SystemClock
from wisp.eventing.log.base import (
    DEFAULT_LEASE,
    DEFAULT_MAX_MESSAGE_BYTES,
    Capabilities,
    ConsumerNotFound,
    LogClosedError,
    Record,
    Start,
    check_sizes,
)
from wisp.eventing.log.state import ConsumerState, HeadWatcher


@dataclass
class _Stream:
    trimmed: int = 0
    """Highest offset deleted by trim; records[0] has offset trimmed + 1."""
    records: deque[tuple[bytes, float]] = field(default_factory=deque)
    consumers: dict[str, ConsumerState] = field(default_factory=dict)

    @property
    def head(self) -> int:
        return self.trimmed + len(self.records)


class MemoryEventLog:
    """Event log kept in process memory (capabilities.durable is False)."""

    def __init__(self, *, clock: Clock | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.capabilities = Capabilities(name="memory", durable=False, ordered=True,
                                         max_message_bytes=max_message_bytes)
        self._clock = clock or SystemClock()
        self._streams: dict[str, _Stream] = {}
        self._watcher = HeadWatcher()
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        self._watcher.wake_all()

    async def __aenter__(self) -> MemoryEventLog:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _check_open(self) -> None:
        if not self._open:
            raise LogClosedError("memory event log is not open")

    def _consumer(self, stream: str, consumer: str) -> tuple[_Stream, ConsumerState]:
        self._check_open()
        s = self._streams.get(stream)
        state = s.consumers.get(consumer) if s else None
        if s is None or state is None:
            raise ConsumerNotFound(f"no consumer {consumer!r} on stream {stream!r}")
        return s, state

    async def append(self, stream: str, records: Sequence[bytes]) -> list[int]:
        self._check_open()
        check_sizes(records, self.capabilities.max_message_bytes)
        s = self._streams.setdefault(stream, _Stream())
        first = s.head + 1
        now = self._clock.now()
        s.records.extend((bytes(data), now) for data in records)
        if records:
            self._watcher.set(stream, s.head)
        return list(range(first, s.head + 1))

    async def create_consumer(self, stream: str, consumer: str, *, start: Start = "earliest",
                              ordered: bool = False) -> None:
        self._check_open()
        s = self._streams.setdefault(stream, _Stream())
        if consumer not in s.consumers:
            cursor = s.head if start == "latest" else s.trimmed
            s.consumers[consumer] = ConsumerState(cursor=cursor, ordered=ordered)

    async def delete_consumer(self, stream: str, consumer: str) -> None:
        self._check_open()
        s = self._streams.get(stream)
        if s is not None:
            s.consumers.pop(consumer, None)

    async def delete_stream(self, stream: str) -> None:
        self._check_open()
        if self._streams.pop(stream, None) is not None:
            self._watcher.forget(stream)

    async def read(self, stream: str, consumer: str, max_records: int, *, now: float,
                   lease: float = DEFAULT_LEASE) -> list[Record]:
        s, state = self._consumer(stream, consumer)
        offsets = state.due(s.head, now, max_records)
        state.lease(offsets, now + lease)
        out = []
        for off in offsets:
            data, at = s.records[off - s.trimmed - 1]
            out.append(Record(off, data, state.attempts.get(off, 0), at))
        return out

    async def ack(self, stream: str, consumer: str, offsets: Sequence[int]) -> None:
        s, state = self._consumer(stream, consumer)
        state.ack(offsets, s.head)

    async def nack(self, stream: str, consumer: str, offset: int, *, retry_at: float) -> None:
        s, state = self._consumer(stream, consumer)
        state.nack(offset, retry_at, s.head)

    async def head(self, stream: str) -> int:
        self._check_open()
        s = self._streams.get(stream)
        return s.head if s else 0

    async def wait(self, stream: str, timeout: float, *, after: int | None = None) -> int:
        self._check_open()
        return await self._watcher.wait(stream, timeout, after)

    async def lag(self, stream: str, consumer: str) -> int:
        s, state = self._consumer(stream, consumer)
        return state.lag(s.head)

    async def trim(self, stream: str) -> int:
        self._check_open()
        s = self._streams.get(stream)
        if s is None:
            return 0
        floor = min((c.cursor for c in s.consumers.values()), default=s.head)
        dropped = max(0, floor - s.trimmed)
        for _ in range(dropped):
            s.records.popleft()
        s.trimmed += dropped
        return dropped
