"""The contract every event log backend must pass.

A new backend joins by adding a factory to `BACKENDS` below (skipping itself when its server or
client library is missing); every test then runs against it unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from wisp.clock import FakeClock
from wisp.eventing.log import (
    ConsumerNotFound,
    EventLog,
    InvalidOffset,
    LogClosedError,
    RecordTooLarge,
    open_backend,
)

T0 = 1_700_000_000.0
S = "ns/broker"

Factory = Callable[[Path, FakeClock], EventLog]

BACKENDS: dict[str, Factory] = {
    "memory": lambda tmp, clock: open_backend("memory", clock=clock),
    "sqlite": lambda tmp, clock: open_backend("sqlite", path=tmp / "events.db", clock=clock),
}


@dataclass
class Harness:
    """An open log plus a way to restart it on the same storage."""

    factory: Factory
    tmp: Path
    clock: FakeClock
    log: EventLog

    async def reopen(self) -> EventLog:
        await self.log.close()
        self.log = self.factory(self.tmp, self.clock)
        await self.log.open()
        return self.log


@pytest.fixture(params=sorted(BACKENDS))
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    factory = BACKENDS[request.param]
    clock = FakeClock(start=T0)
    harness = Harness(factory, tmp_path, clock, factory(tmp_path, clock))
    await harness.log.open()
    try:
        yield harness
    finally:
        await harness.log.close()


def durable_only(h: Harness) -> None:
    if not h.log.capabilities.durable:
        pytest.skip(f"{h.log.capabilities.name} is not durable")


async def fill(log: EventLog, n: int, stream: str = S) -> list[int]:
    return await log.append(stream, [f"e{i}".encode() for i in range(1, n + 1)])


async def offsets_read(log: EventLog, consumer: str, n: int = 100, *, now: float = T0,
                       lease: float = 30.0) -> list[int]:
    return [r.offset for r in await log.read(S, consumer, n, now=now, lease=lease)]


# -- appending ------------------------------------------------------------------------------

async def test_append_assigns_consecutive_offsets_from_one(h: Harness) -> None:
    assert await h.log.append(S, [b"a"]) == [1]
    assert await h.log.append(S, [b"b", b"c", b"d"]) == [2, 3, 4]
    assert await h.log.append(S, []) == []
    assert await h.log.head(S) == 4
    assert await h.log.head("other") == 0


async def test_streams_are_independent(h: Harness) -> None:
    await h.log.append("s1", [b"x", b"y"])
    assert await h.log.append("s2", [b"z"]) == [1]


async def test_read_returns_data_in_offset_order_with_metadata(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await h.log.append(S, [b"one", b"two"])
    await h.clock.advance(5)
    await h.log.append(S, [b"three"])
    records = await h.log.read(S, "t1", 10, now=T0)
    assert [(r.offset, r.data, r.attempts) for r in records] == [
        (1, b"one", 0), (2, b"two", 0), (3, b"three", 0)]
    assert [r.appended_at for r in records] == [T0, T0, T0 + 5]


async def test_read_respects_max_records(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 5)
    assert await offsets_read(h.log, "t1", 2) == [1, 2]
    assert await offsets_read(h.log, "t1", 2) == [3, 4]
    assert await offsets_read(h.log, "t1", 2) == [5]
    assert await offsets_read(h.log, "t1", 2) == []


async def test_one_megabyte_records_round_trip(h: Harness) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    await h.log.create_consumer(S, "t1")
    await h.log.append(S, [big, b"small"])
    records = await h.log.read(S, "t1", 10, now=T0)
    assert [r.data for r in records] == [big, b"small"]


async def test_oversized_record_rejects_whole_append(h: Harness) -> None:
    limit = h.log.capabilities.max_message_bytes
    with pytest.raises(RecordTooLarge):
        await h.log.append(S, [b"fine", b"x" * (limit + 1)])
    assert await h.log.head(S) == 0


async def test_concurrent_appenders_get_unique_offsets_matching_their_data(h: Harness) -> None:
    async def writer(w: int) -> list[tuple[int, bytes]]:
        out = []
        for i in range(20):
            data = f"{w}-{i}".encode()
            (off,) = await h.log.append(S, [data])
            out.append((off, data))
        return out

    await h.log.create_consumer(S, "t1")
    results = await asyncio.gather(*(writer(w) for w in range(50)))
    written = dict(pair for batch in results for pair in batch)
    assert sorted(written) == list(range(1, 1001))
    records = await h.log.read(S, "t1", 2000, now=T0)
    assert {r.offset: r.data for r in records} == written


# -- consumers ------------------------------------------------------------------------------

async def test_consumers_have_independent_cursors(h: Harness) -> None:
    await h.log.create_consumer(S, "a")
    await h.log.create_consumer(S, "b")
    await fill(h.log, 3)
    assert await offsets_read(h.log, "a") == [1, 2, 3]
    await h.log.ack(S, "a", [1, 2, 3])
    assert await offsets_read(h.log, "b") == [1, 2, 3]
    assert await h.log.lag(S, "a") == 0
    assert await h.log.lag(S, "b") == 3


async def test_latest_consumer_skips_existing_records(h: Harness) -> None:
    await fill(h.log, 3)
    await h.log.create_consumer(S, "late", start="latest")
    await h.log.create_consumer(S, "early", start="earliest")
    await h.log.append(S, [b"new"])
    assert await offsets_read(h.log, "late") == [4]
    assert await offsets_read(h.log, "early") == [1, 2, 3, 4]


async def test_create_consumer_is_idempotent(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 2)
    await h.log.read(S, "t1", 1, now=T0)
    await h.log.ack(S, "t1", [1])
    await h.log.create_consumer(S, "t1", start="earliest")
    assert await offsets_read(h.log, "t1") == [2]
    assert await h.log.lag(S, "t1") == 1


async def test_unknown_consumer_and_closed_log_raise(h: Harness) -> None:
    with pytest.raises(ConsumerNotFound):
        await h.log.read(S, "ghost", 1, now=T0)
    await h.log.create_consumer(S, "t1")
    with pytest.raises(ConsumerNotFound):
        await h.log.lag(S, "ghost")
    await h.log.close()
    with pytest.raises(LogClosedError):
        await h.log.append(S, [b"x"])


async def test_delete_consumer_and_stream(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 2)
    await h.log.delete_consumer(S, "t1")
    await h.log.delete_consumer(S, "t1")  # idempotent
    with pytest.raises(ConsumerNotFound):
        await h.log.read(S, "t1", 1, now=T0)
    await h.log.delete_stream(S)
    assert await h.log.head(S) == 0
    await h.log.create_consumer(S, "t1")
    assert await h.log.append(S, [b"fresh"]) == [1]
    records = await h.log.read(S, "t1", 10, now=T0)
    assert [r.data for r in records] == [b"fresh"]


# -- acks, leases and nacks -----------------------------------------------------------------

async def test_ack_out_of_order_and_lag(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 4)
    await h.log.read(S, "t1", 4, now=T0)
    await h.log.ack(S, "t1", [2, 4])
    assert await h.log.lag(S, "t1") == 2
    await h.log.ack(S, "t1", [1, 1, 2])  # duplicates and repeats are harmless
    assert await h.log.lag(S, "t1") == 1
    # after the lease expires only the one unacked record comes back
    assert await offsets_read(h.log, "t1", now=T0 + 31) == [3]


async def test_ack_beyond_head_is_rejected(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 1)
    with pytest.raises(InvalidOffset):
        await h.log.ack(S, "t1", [1, 2])
    assert await h.log.lag(S, "t1") == 1  # nothing of the bad call was applied
    with pytest.raises(InvalidOffset):
        await h.log.nack(S, "t1", 5, retry_at=T0)


async def test_lease_expiry_redelivers(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 2)
    assert await offsets_read(h.log, "t1", now=T0, lease=10) == [1, 2]
    assert await offsets_read(h.log, "t1", now=T0 + 9.9) == []
    await h.log.ack(S, "t1", [2])
    redelivered = await h.log.read(S, "t1", 10, now=T0 + 10.1)
    assert [(r.offset, r.attempts) for r in redelivered] == [(1, 0)]


async def test_nack_delays_redelivery_and_counts_attempts(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 3)
    await h.log.read(S, "t1", 1, now=T0)
    await h.log.nack(S, "t1", 1, retry_at=T0 + 5)
    # unordered: the delayed record is skipped, later ones flow
    assert await offsets_read(h.log, "t1", now=T0 + 1) == [2, 3]
    assert await offsets_read(h.log, "t1", now=T0 + 4.9) == []
    again = await h.log.read(S, "t1", 10, now=T0 + 5)
    assert [(r.offset, r.attempts) for r in again] == [(1, 1)]
    await h.log.nack(S, "t1", 1, retry_at=T0 + 6)
    third = await h.log.read(S, "t1", 10, now=T0 + 6)
    assert [(r.offset, r.attempts) for r in third] == [(1, 2)]


async def test_nack_of_acked_record_is_ignored(h: Harness) -> None:
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 1)
    await h.log.ack(S, "t1", [1])
    await h.log.nack(S, "t1", 1, retry_at=T0)
    assert await offsets_read(h.log, "t1", now=T0 + 100) == []


async def test_ordered_consumer_keeps_one_in_flight_and_blocks_on_retry(h: Harness) -> None:
    await h.log.create_consumer(S, "fifo", ordered=True)
    await fill(h.log, 3)
    assert await offsets_read(h.log, "fifo", 1) == [1]
    assert await offsets_read(h.log, "fifo", 1) == []  # 1 still in flight: nothing overtakes it
    await h.log.nack(S, "fifo", 1, retry_at=T0 + 5)
    assert await offsets_read(h.log, "fifo", 10, now=T0 + 1) == []
    assert await offsets_read(h.log, "fifo", 1, now=T0 + 5) == [1]
    await h.log.ack(S, "fifo", [1])
    assert await offsets_read(h.log, "fifo", 10, now=T0 + 5) == [2, 3]


# -- wake-ups -------------------------------------------------------------------------------

async def test_wait_wakes_on_append(h: Harness) -> None:
    head = await h.log.head(S)
    waiter = asyncio.create_task(h.log.wait(S, 5.0, after=head))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await h.log.append(S, [b"x"])
    assert await asyncio.wait_for(waiter, 1.0) == 1


async def test_wait_returns_at_once_when_head_already_passed(h: Harness) -> None:
    await fill(h.log, 2)
    assert await asyncio.wait_for(h.log.wait(S, 5.0, after=1), 0.5) == 2


async def test_wait_times_out_with_unchanged_head(h: Harness) -> None:
    await fill(h.log, 1)
    assert await h.log.wait(S, 0.05) == 1


# -- trimming -------------------------------------------------------------------------------

async def test_trim_drops_only_what_every_consumer_acked(h: Harness) -> None:
    await h.log.create_consumer(S, "a")
    await h.log.create_consumer(S, "b")
    await fill(h.log, 5)
    await h.log.ack(S, "a", [1, 2, 3, 4])
    await h.log.ack(S, "b", [1, 2, 4])
    assert await h.log.trim(S) == 2
    assert await h.log.trim(S) == 0
    assert await offsets_read(h.log, "b") == [3, 5]
    await h.log.create_consumer(S, "c", start="earliest")
    assert await offsets_read(h.log, "c") == [3, 4, 5]
    assert await h.log.lag(S, "c") == 3
    assert await h.log.append(S, [b"after-trim"]) == [6]


# -- durability -----------------------------------------------------------------------------

async def test_state_survives_reopen(h: Harness) -> None:
    durable_only(h)
    await h.log.create_consumer(S, "t1")
    await fill(h.log, 5)
    await h.log.create_consumer(S, "fifo", ordered=True, start="latest")
    await h.log.read(S, "t1", 5, now=T0)
    await h.log.ack(S, "t1", [1, 3])
    await h.log.nack(S, "t1", 2, retry_at=T0 + 100)
    await h.log.trim(S)
    log = await h.reopen()
    assert await log.head(S) == 5
    assert await log.lag(S, "t1") == 3
    # leases are gone: 4 and 5 were read but never acked, so they come back
    again = await log.read(S, "t1", 10, now=T0 + 1, lease=1000)
    assert [(r.offset, r.data) for r in again] == [(4, b"e4"), (5, b"e5")]
    delayed = await log.read(S, "t1", 10, now=T0 + 100)
    assert [(r.offset, r.attempts) for r in delayed] == [(2, 1)]
    assert await log.append(S, [b"e6"]) == [6]
    assert await offsets_read(log, "fifo", 10) == [6]
    await log.ack(S, "fifo", [6])
    log = await h.reopen()
    assert await offsets_read(log, "fifo", 10) == []  # still ordered, cursor persisted
    await log.append(S, [b"e7", b"e8"])
    assert await offsets_read(log, "fifo", 1) == [7]
    await log.nack(S, "fifo", 7, retry_at=T0 + 50)
    assert await offsets_read(log, "fifo", 10, now=T0 + 1) == []  # 8 may not overtake 7


async def test_backend_satisfies_the_port_and_declares_capabilities(h: Harness) -> None:
    assert isinstance(h.log, EventLog)
    caps = h.log.capabilities
    if h.log.capabilities.name == "memory":
        assert caps.durable is False
    assert caps.is_retryable(caps.retryable_errors[0]("transient"))
    assert not caps.is_retryable(ValueError("bug"))


def test_backends_resolve_by_name() -> None:
    assert open_backend("memory").capabilities.name == "memory"
    with pytest.raises(ValueError, match="unknown event log backend"):
        open_backend("kafka")
