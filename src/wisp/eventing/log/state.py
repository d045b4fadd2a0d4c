"""Backend-independent pieces: a consumer's cursor state machine and the append notifier.

Every backend keeps the same per-consumer bookkeeping, so the semantics of leases, nacks,
out-of-order acks and ordered consumers are written once here, as plain synchronous code, and the
backends only persist what changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from wisp.eventing.log.base import InvalidOffset


@dataclass
class AckChange:
    """What one ack did, so a durable backend can persist exactly that."""

    cursor_moved: bool
    acked_above: list[int]
    """Offsets newly acked that are still above the (new) cursor."""


@dataclass
class ConsumerState:
    """One consumer's position in a stream.

    `cursor` is a low-water mark: every offset ≤ cursor is acked. Acks above it sit in `acked`
    until the gap closes. `attempts` and `retry_at` come from nacks and are persisted; `leases`
    live only in memory so that a restart hands every unacked record out again.
    """

    cursor: int
    ordered: bool = False
    acked: set[int] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)
    leases: dict[int, float] = field(default_factory=dict)

    def due(self, head: int, now: float, limit: int) -> list[int]:
        """Offsets deliverable at `now`, oldest first; ordered consumers stop at the first blocked one."""
        out: list[int] = []
        off = self.cursor + 1
        while off <= head and len(out) < limit:
            if off not in self.acked:
                if not self._blocked(off, now):
                    out.append(off)
                elif self.ordered:
                    break
            off += 1
        return out

    def _blocked(self, off: int, now: float) -> bool:
        return self.leases.get(off, float("-inf")) > now or self.retry_at.get(off, float("-inf")) > now

    def lease(self, offsets: Iterable[int], until: float) -> None:
        for off in offsets:
            self.leases[off] = until

    def ack(self, offsets: Iterable[int], head: int) -> AckChange:
        """Mark offsets done and advance the cursor over any contiguous run of acks."""
        wanted = sorted(set(offsets))
        _check_range(wanted, head)
        fresh = [o for o in wanted if o > self.cursor and o not in self.acked]
        for off in fresh:
            self.acked.add(off)
            self._forget(off)
        start = self.cursor
        while self.cursor + 1 in self.acked:
            self.cursor += 1
            self.acked.discard(self.cursor)
        return AckChange(self.cursor != start, [o for o in fresh if o > self.cursor])

    def nack(self, offset: int, retry_at: float, head: int) -> int | None:
        """Record a failed attempt; returns the new attempt count, or None if already acked."""
        _check_range([offset], head)
        if offset <= self.cursor or offset in self.acked:
            return None
        self.leases.pop(offset, None)
        self.attempts[offset] = self.attempts.get(offset, 0) + 1
        self.retry_at[offset] = retry_at
        return self.attempts[offset]

    def lag(self, head: int) -> int:
        return max(0, head - self.cursor - len(self.acked))

    def _forget(self, off: int) -> None:
        self.attempts.pop(off, None)
        self.retry_at.pop(off, None)
        self.leases.pop(off, None)


def _check_range(offsets: list[int], head: int) -> None:
    bad = [o for o in offsets if o < 1 or o > head]
    if bad:
        raise InvalidOffset(f"offsets {bad} were never appended (head is {head})")


class HeadWatcher:
    """In-process wake-ups on append, so idle consumers block instead of polling storage."""

    def __init__(self) -> None:
        self._heads: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def get(self, stream: str) -> int:
        return self._heads.get(stream, 0)

    def set(self, stream: str, head: int) -> None:
        """Publish a new head and wake everyone waiting on that stream."""
        self._heads[stream] = head
        for fut in self._waiters.pop(stream, set()):
            if not fut.done():
                fut.set_result(None)

    def forget(self, stream: str) -> None:
        self.set(stream, 0)
        self._heads.pop(stream, None)

    def wake_all(self) -> None:
        """Release every waiter (used on close so consumers notice promptly)."""
        for stream in list(self._waiters):
            self.set(stream, self.get(stream))

    async def wait(self, stream: str, timeout: float, after: int | None) -> int:
        """Return once the head passes `after` (default: the current head) or `timeout` elapses."""
        threshold = self.get(stream) if after is None else after
        if self.get(stream) > threshold or timeout <= 0:
            return self.get(stream)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(stream, set()).add(fut)
        try:
            await asyncio.wait({fut}, timeout=timeout)
        finally:
            waiters = self._waiters.get(stream)
            if waiters is not None:
                waiters.discard(fut)
        return self.get(stream)
