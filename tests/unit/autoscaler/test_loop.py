"""The autoscaler driver on a fake clock: cadence, scale to zero, pokes, bursts, reachability."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from wisp.api.autoscaling import AutoscalingSpec
from wisp.autoscaler.loop import Autoscaler
from wisp.autoscaler.scaler import Mode, ScaleResult
from wisp.autoscaler.window import Stat
from wisp.clock import FakeClock

KEY = "ns/app-1"
SHORT = AutoscalingSpec(stable_window=6.0, panic_window=1.0, scale_to_zero_grace=2.0)


@dataclass
class FakeRuntime:
    """Instances become ready the moment they are asked for; load is whatever the test sets."""

    load: dict[str, float] = field(default_factory=dict)
    ready: dict[str, int] = field(default_factory=dict)
    results: list[tuple[str, ScaleResult]] = field(default_factory=list)
    stats_reads: int = 0
    fail: set[str] = field(default_factory=set)
    slow: bool = False

    def stat(self, key: str) -> Stat:
        self.stats_reads += 1
        return Stat(concurrency=self.load.get(key, 0.0), request_count=self.load.get(key, 0.0))

    def count(self, key: str) -> int:
        return self.ready.get(key, 0)

    async def apply(self, key: str, result: ScaleResult) -> None:
        if key in self.fail:
            raise RuntimeError("runtime broke")
        self.results.append((key, result))
        if not self.slow:
            self.ready[key] = result.replicas

    def last(self, key: str = KEY) -> ScaleResult:
        return [r for k, r in self.results if k == key][-1]


Rig = tuple[FakeClock, FakeRuntime, Autoscaler]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FakeClock, FakeRuntime, Autoscaler]]:
    clock = FakeClock()
    rt = FakeRuntime()
    scaler = Autoscaler(clock, rt.stat, rt.count, rt.apply, tick_interval=2.0)
    yield clock, rt, scaler
    await scaler.stop()


async def start(scaler: Autoscaler) -> None:
    """Start the loop and let it read the clock before the test moves it."""
    scaler.start()
    await asyncio.sleep(0)


async def run_for(clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        await clock.advance(step)


async def test_a_new_revision_gets_its_initial_scale_then_becomes_active(rig: Rig) -> None:
    _, _, scaler = rig
    assert scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    assert not scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)  # same spec: no reset
    first = await scaler.evaluate(KEY)
    assert first is not None and first.replicas == 1 and first.active.reason == "Queued"
    assert first.desired_replicas is None  # no metrics yet: the scale is unknown
    after = await scaler.refresh(KEY)  # the instance came up
    assert after is not None and after.active.status == "True" and after.actual_replicas == 1


async def test_stats_every_second_and_decisions_every_tick(rig: Rig) -> None:
    clock, rt, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await start(scaler)
    await run_for(clock, 10.0)
    assert rt.stats_reads == 10
    assert len(rt.results) == 5


async def test_idle_revision_goes_inactive_then_to_zero(rig: Rig) -> None:
    clock, rt, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await scaler.refresh(KEY)
    await start(scaler)
    await run_for(clock, 5.0)
    assert rt.last().replicas == 1 and rt.last().active.status == "True"  # within the stable window
    await run_for(clock, 5.0)
    final = rt.last()
    assert final.replicas == 0 and final.desired_replicas == 0
    assert (final.active.status, final.active.reason) == ("False", "NoTraffic")
    assert final.mode is Mode.PROXY


async def test_min_scale_keeps_instances_when_idle(rig: Rig) -> None:
    clock, rt, scaler = rig
    spec = AutoscalingSpec(stable_window=6.0, panic_window=1.0, scale_to_zero_grace=2.0, min_scale=2)
    scaler.track(KEY, spec, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await start(scaler)
    await run_for(clock, 20.0)
    assert rt.last().replicas == 2 and rt.last().active.status == "True"


async def test_a_request_at_zero_pokes_a_decision_at_once(rig: Rig) -> None:
    clock, rt, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await start(scaler)
    await run_for(clock, 20.0)
    assert rt.last().replicas == 0
    applied = len(rt.results)
    scaler.demand(KEY)
    scaler.demand(KEY)  # the second request of the same cold episode does not poke again
    for _ in range(5):
        await asyncio.sleep(0)  # no clock movement: the poke does not wait for a tick
    assert len(rt.results) == applied + 1
    woke = rt.last()
    assert woke.replicas == 1 and woke.want == 1


async def test_demand_does_not_poke_again_while_an_instance_is_on_its_way(rig: Rig) -> None:
    clock, rt, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await start(scaler)
    await run_for(clock, 20.0)
    assert rt.last().replicas == 0
    rt.slow = True  # from now on instances take their time to become ready
    scaler.demand(KEY)
    for _ in range(5):
        await asyncio.sleep(0)
    applied = len(rt.results)
    assert rt.last().replicas == 1 and rt.ready[KEY] == 0
    for _ in range(10):
        scaler.demand(KEY)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(rt.results) == applied


async def test_a_burst_scales_out_in_panic_and_back_in_later(rig: Rig) -> None:
    clock, rt, scaler = rig
    spec = AutoscalingSpec(stable_window=6.0, panic_window=1.0, scale_to_zero_grace=2.0, target=1.0, total=1.0)
    scaler.track(KEY, spec, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await scaler.refresh(KEY)
    await start(scaler)
    rt.load[KEY] = 8.0
    await run_for(clock, 4.0)
    peak = rt.last()
    assert peak.replicas == 8
    rt.load[KEY] = 0.0
    await run_for(clock, 30.0)
    assert rt.last().replicas == 0
    assert max(r.replicas for _, r in rt.results) == 8


async def test_unreachable_revision_stops_at_once_and_ignores_demand(rig: Rig) -> None:
    _, rt, scaler = rig
    spec = AutoscalingSpec(stable_window=6.0, panic_window=1.0, scale_to_zero_grace=2.0, min_scale=3)
    scaler.track(KEY, spec, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    assert rt.last().replicas == 3
    scaler.track(KEY, spec, reachable=False, progress_deadline=600)
    result = await scaler.refresh(KEY)
    assert result is not None and result.replicas == 0 and result.active.reason == "NoTraffic"
    scaler.demand(KEY)
    await asyncio.sleep(0)
    assert rt.last().replicas == 0


async def test_one_failing_revision_does_not_stop_the_others(rig: Rig) -> None:
    clock, rt, scaler = rig
    rt.fail.add("ns/broken-1")
    scaler.track("ns/broken-1", SHORT, reachable=True, progress_deadline=600)
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await start(scaler)
    await run_for(clock, 6.0)
    assert len([k for k, _ in rt.results if k == KEY]) == 3
    assert scaler.running


async def test_forget_and_unknown_keys_are_harmless(rig: Rig) -> None:
    _, rt, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    scaler.forget(KEY)
    scaler.demand(KEY)
    assert await scaler.evaluate(KEY) is None and await scaler.refresh(KEY) is None
    assert scaler.last(KEY) is None and rt.results == []


async def test_a_changed_spec_keeps_the_instances(rig: Rig) -> None:
    _, _, scaler = rig
    scaler.track(KEY, SHORT, reachable=True, progress_deadline=600)
    await scaler.evaluate(KEY)
    await scaler.refresh(KEY)
    wider = AutoscalingSpec(stable_window=12.0, panic_window=1.0, scale_to_zero_grace=2.0)
    assert not scaler.track(KEY, wider, reachable=True, progress_deadline=600)
    result = await scaler.refresh(KEY)
    assert result is not None and result.replicas == 1 and result.active.status == "True"
