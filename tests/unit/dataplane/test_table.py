"""The routing table: splits, tags, endpoint choice, and requests held while a revision is at zero."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wisp.clock import FakeClock
from wisp.dataplane import AcquireTimeout, QueueFull, RevisionGone, RoutingTable
from wisp.dataplane.table import HostRoute, RevisionTarget


def test_split_must_sum_to_100() -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        HostRoute.build([("a", 50), ("b", 40)])
    with pytest.raises(ValueError, match=r"0\.\.100"):
        HostRoute.build([("a", 150), ("b", -50)])


def _splits() -> st.SearchStrategy[list[int]]:
    """Percent lists summing to 100 (cut points on 0..100), zeros included."""
    cuts = st.lists(st.integers(0, 100), max_size=5).map(sorted)
    return cuts.map(lambda c: [b - a for a, b in zip([0, *c], [*c, 100], strict=True)])


@given(_splits(), st.floats(0, 100, exclude_max=True))
def test_choose_lands_in_the_interval_owned_by_the_key(percents: list[int], draw: float) -> None:
    route = HostRoute.build([(f"rev-{i}", p) for i, p in enumerate(percents)])
    key = route.choose(draw)
    assert key is not None
    i = int(key.split("-")[1])
    low = sum(percents[:i])
    assert percents[i] > 0 and low <= draw < low + percents[i]


def test_weighted_pick_follows_percents_and_skips_zero() -> None:
    route = HostRoute.build([("a", 80), ("b", 20), ("c", 0)])
    counts = Counter(route.pick(None) for _ in range(5000))
    assert counts["c"] == 0
    assert 0.75 < counts["a"] / 5000 < 0.85


def test_tag_wins_and_unknown_tag_falls_through() -> None:
    route = HostRoute.build([("main", 100)], {"canary": "cand"})
    assert route.pick("canary") == "cand"
    assert route.pick("nope") == "main"


def test_table_hosts_are_case_and_port_insensitive() -> None:
    table = RoutingTable()
    table.set_host("Svc.NS.localhost:8080", [("ns/svc-1", 100)])
    assert table.route("svc.ns.localhost") is not None
    table.remove_host("svc.ns.localhost")
    assert table.route("svc.ns.localhost") is None


def test_revision_is_created_on_demand_and_removed() -> None:
    table = RoutingTable()
    target = table.revision("ns/a-1")
    assert table.revision("ns/a-1") is target
    table.remove_revision("ns/a-1")
    assert table.revision("ns/a-1") is not target


def test_set_endpoints_keeps_known_endpoints_and_their_counters() -> None:
    target = RevisionTarget("ns/a-1")
    target.set_endpoints([("127.0.0.1", 1), ("127.0.0.1", 2)])
    ep = target.try_acquire()
    assert ep is not None
    target.set_endpoints([("127.0.0.1", 3), ep.address])
    assert ep in target.endpoints and ep.in_flight == 1
    assert {e.port for e in target.endpoints} == {3, ep.port}


def test_removed_endpoint_pool_refuses_connections() -> None:
    target = RevisionTarget("ns/a-1")
    target.set_endpoints([("127.0.0.1", 1)])
    old = target.endpoints[0]
    target.set_endpoints([])
    assert old.pool.closed and target.try_acquire() is None


def test_power_of_two_choices_prefers_the_less_loaded() -> None:
    target = RevisionTarget("ns/a-1")
    target.set_endpoints([("127.0.0.1", 1), ("127.0.0.1", 2)])
    busy, idle = target.endpoints
    busy.in_flight = 10
    for _ in range(50):
        ep = target.try_acquire()
        assert ep is idle
        target.release(ep)
    assert idle.in_flight == 0


async def test_acquire_waits_at_zero_and_pokes_the_autoscaler() -> None:
    clock = FakeClock()
    target = RevisionTarget("ns/a-1", clock=clock)
    pokes: list[str] = []
    target.on_demand = pokes.append
    waiter = asyncio.create_task(target.acquire(timeout=60))
    await asyncio.sleep(0)
    assert pokes == ["ns/a-1"] and target.metrics.queued == 1 and not waiter.done()
    await clock.advance(30)
    assert not waiter.done()
    target.set_endpoints([("127.0.0.1", 9)])
    ep = await asyncio.wait_for(waiter, 1)
    assert ep.port == 9 and ep.in_flight == 1 and target.metrics.queued == 0


async def test_acquire_times_out_on_the_injected_clock() -> None:
    clock = FakeClock()
    target = RevisionTarget("ns/a-1", clock=clock)
    waiter = asyncio.create_task(target.acquire(timeout=10))
    for _ in range(3):
        await asyncio.sleep(0)  # let the waiter start its deadline
    await clock.advance(9.9)
    assert not waiter.done()
    await clock.advance(0.2)
    with pytest.raises(AcquireTimeout) as info:
        await waiter
    assert info.value.status == 504 and target.metrics.queued == 0


async def test_acquire_keeps_waiting_if_endpoints_vanish_before_it_runs() -> None:
    clock = FakeClock()
    target = RevisionTarget("ns/a-1", clock=clock)
    waiter = asyncio.create_task(target.acquire(timeout=10))
    await asyncio.sleep(0)
    target.set_endpoints([("127.0.0.1", 1)])
    target.set_endpoints([])  # gone again before the waiter got to run
    await asyncio.sleep(0)
    assert not waiter.done()
    target.set_endpoints([("127.0.0.1", 2)])
    assert (await asyncio.wait_for(waiter, 1)).port == 2


async def test_queue_full_and_revision_removed() -> None:
    clock = FakeClock()
    target = RevisionTarget("ns/a-1", clock=clock, max_waiters=1)
    first = asyncio.create_task(target.acquire(timeout=10))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await target.acquire(timeout=10)
    target.close()
    with pytest.raises(RevisionGone):
        await first
