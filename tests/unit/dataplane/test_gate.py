"""The instance gate: containerConcurrency as a hard limit, the bounded FIFO queue, balancing by CC,
and the time-weighted stats the autoscaler reads."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wisp.clock import FakeClock
from wisp.dataplane.errors import AcquireTimeout, QueueFull
from wisp.dataplane.meter import ConcurrencyMeter
from wisp.dataplane.table import RevisionTarget

EPS = [("127.0.0.1", 9001), ("127.0.0.1", 9002), ("127.0.0.1", 9003)]


def target(cc: int, endpoints: list[tuple[str, int]] = EPS, **kw: object) -> RevisionTarget:
    t = RevisionTarget("ns/app-1", clock=FakeClock(), **kw)  # type: ignore[arg-type]
    t.container_concurrency = cc
    t.set_endpoints(endpoints)
    return t


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# ---- hard limit and queue ---------------------------------------------------------------------

async def test_cc_is_a_hard_limit_and_a_release_hands_the_slot_to_the_oldest_waiter() -> None:
    t = target(1, EPS[:1])
    first = t.try_acquire()
    assert first is not None and t.try_acquire() is None
    waiters = [asyncio.create_task(t.acquire(10)) for _ in range(3)]
    await settle()
    assert t.metrics.queued == 3 and not any(w.done() for w in waiters)
    t.release(first)
    await settle()
    assert [w.done() for w in waiters] == [True, False, False]
    assert first.in_flight == 1  # the slot moved, it was never free for someone else to grab
    assert t.try_acquire() is None  # a newcomer does not overtake the queue
    t.release(await waiters[0])
    t.release(await waiters[1])
    ep = await waiters[2]
    assert ep.in_flight == 1 and t.metrics.queued == 0


async def test_no_request_ever_exceeds_cc_per_endpoint_under_churn() -> None:
    t = target(2)
    peak: Counter[int] = Counter()
    running = 0

    async def request(i: int) -> None:
        nonlocal running
        ep = await t.acquire(60)
        peak[ep.port] = max(peak[ep.port], ep.in_flight)
        running += 1
        for _ in range(i % 4):
            await asyncio.sleep(0)
        running -= 1
        t.release(ep)

    await asyncio.gather(*(request(i) for i in range(200)))
    assert max(peak.values()) == 2 and set(peak) == {9001, 9002, 9003}
    assert all(ep.in_flight == 0 for ep in t.endpoints) and t.metrics.queued == 0


async def test_serve_mode_queue_is_ten_per_slot_and_overflow_is_503() -> None:
    t = target(2, EPS[:2])
    t.activator_in_path = False
    assert t.queue_limit() == 10 * 2 * 2
    held = [t.try_acquire() for _ in range(4)]
    assert all(held) and t.try_acquire() is None
    waiters = [asyncio.create_task(t.acquire(10)) for _ in range(40)]
    await settle()
    with pytest.raises(QueueFull) as info:
        await t.acquire(10)
    assert info.value.status == 503 and "queue full" in info.value.message
    # Behind the activator the revision-wide bound applies instead.
    t.activator_in_path = True
    assert t.queue_limit() == t.max_waiters == 10_000
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert t.metrics.queued == 0


async def test_a_waiter_that_times_out_leaves_the_queue_and_takes_no_slot() -> None:
    clock = FakeClock()
    t = RevisionTarget("ns/app-1", clock=clock)
    t.container_concurrency = 1
    t.set_endpoints(EPS[:1])
    busy = t.try_acquire()
    assert busy is not None
    waiter = asyncio.create_task(t.acquire(5))
    await settle()
    await clock.advance(5.1)
    with pytest.raises(AcquireTimeout):
        await waiter
    t.release(busy)
    assert busy.in_flight == 0 and t.metrics.queued == 0


async def test_a_cancelled_waiter_returns_a_slot_it_was_handed() -> None:
    t = target(1, EPS[:1])
    busy = t.try_acquire()
    assert busy is not None
    waiter = asyncio.create_task(t.acquire(10))
    await settle()
    t.release(busy)  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs (the client went away)
    await asyncio.gather(waiter, return_exceptions=True)
    assert busy.in_flight == 0
    assert t.try_acquire() is busy


async def test_new_endpoints_serve_waiters_in_arrival_order() -> None:
    t = target(1, [])
    pokes: list[str] = []
    t.on_demand = pokes.append
    waiters = [asyncio.create_task(t.acquire(10)) for _ in range(3)]
    await settle()
    assert pokes  # held at zero: the autoscaler was poked
    t.set_endpoints(EPS[:2])
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    t.release(await waiters[0])
    await settle()
    assert waiters[2].done()


async def test_busy_endpoints_do_not_poke_the_autoscaler() -> None:
    t = target(1, EPS[:1])
    pokes: list[str] = []
    t.on_demand = pokes.append
    busy = t.try_acquire()
    waiter = asyncio.create_task(t.acquire(10))
    await settle()
    assert pokes == []  # the revision has an instance; the autoscaler sees the load in the stats
    assert busy is not None
    t.release(busy)
    t.release(await waiter)


# ---- balancing (spec §4.2) --------------------------------------------------------------------

def test_cc_one_to_three_fills_the_first_available_endpoint() -> None:
    t = target(3)
    got = [t.try_acquire() for _ in range(7)]
    assert [ep.port if ep else None for ep in got] == [9001] * 3 + [9002] * 3 + [9003]


def test_cc_above_three_round_robins_over_endpoints_with_room() -> None:
    t = target(4)
    got = [t.try_acquire() for _ in range(6)]
    assert [ep.port if ep else None for ep in got] == [9001, 9002, 9003, 9001, 9002, 9003]
    t.endpoints[1].in_flight = 4  # full
    more = [t.try_acquire() for _ in range(4)]
    assert [ep.port if ep else None for ep in more] == [9001, 9003, 9001, 9003]


def test_cc_zero_takes_the_less_loaded_of_two_and_has_no_limit() -> None:
    t = target(0, EPS[:2])
    t.endpoints[0].in_flight = 1000
    assert all((ep := t.try_acquire()) is not None and ep.port == 9002 for _ in range(500))


@settings(max_examples=60, deadline=None)
@given(cc=st.integers(1, 6), n=st.integers(1, 4), takes=st.integers(0, 40))
def test_slots_taken_never_exceed_cc_times_endpoints(cc: int, n: int, takes: int) -> None:
    t = target(cc, [("127.0.0.1", 9000 + i) for i in range(n)])
    got = [ep for _ in range(takes) if (ep := t.try_acquire()) is not None]
    assert len(got) == min(takes, cc * n)
    assert all(ep.in_flight <= cc for ep in t.endpoints)


# ---- stats -------------------------------------------------------------------------------------

def test_meter_is_time_weighted() -> None:
    meter = ConcurrencyMeter(0.0)
    # Two requests of 500 ms each in one second average to 1.0 (spec §3.1).
    meter.arrive(0.0)
    meter.arrive(0.0)
    meter.leave(0.5)
    meter.leave(0.5)
    stat = meter.sample(1.0)
    assert stat.concurrency == pytest.approx(1.0) and stat.request_count == 2
    # One long request spanning periods counts in each, and arrivals only where they happened.
    meter.arrive(1.25)
    stat = meter.sample(2.0)
    assert stat.concurrency == pytest.approx(0.75) and stat.request_count == 1
    stat = meter.sample(3.0)
    assert stat.concurrency == pytest.approx(1.0) and stat.request_count == 0
    meter.leave(3.5)
    assert meter.sample(4.0).concurrency == pytest.approx(0.5)
    assert meter.sample(4.0).concurrency == 0.0  # zero-length period: the current level


async def test_target_meter_counts_waiting_requests_as_load() -> None:
    clock = FakeClock()
    t = RevisionTarget("ns/app-1", clock=clock)
    for _ in range(3):
        t.begin()  # held at zero: no endpoint yet
    await clock.advance(1.0)
    stat = t.sample_stat()
    assert stat.concurrency == pytest.approx(3.0) and stat.request_count == pytest.approx(3.0)
    t.end()
    await clock.advance(1.0)
    assert t.sample_stat().concurrency == pytest.approx(2.0)
    assert t.metrics.in_flight == 2 and t.metrics.requests == 3


def test_cold_starts_are_counted() -> None:
    t = RevisionTarget("ns/app-1", clock=FakeClock())
    t.record_cold_start(0.25)
    t.record_cold_start(0.15)
    assert t.metrics.cold_starts == 2 and t.metrics.cold_start_seconds == pytest.approx(0.4)


def test_revision_spec_limits_reach_the_gate() -> None:
    from wisp.controllers.instances import configure_target

    t = RevisionTarget("ns/app-1", clock=FakeClock())
    rev = {"spec": {"timeoutSeconds": 30, "responseStartTimeoutSeconds": 5, "idleTimeoutSeconds": 7,
                    "containerConcurrency": 4}}
    configure_target(t, rev, default_timeout=300)
    assert (t.timeout_seconds, t.response_start_timeout, t.idle_timeout, t.container_concurrency) == (
        30.0, 5.0, 7.0, 4)
    configure_target(t, {"spec": {}}, default_timeout=300)
    assert (t.timeout_seconds, t.response_start_timeout, t.idle_timeout, t.container_concurrency) == (
        300.0, 0.0, 0.0, 0)
