"""RevisionSupervisor logic against a scripted backend and a fake clock: no processes, no sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wisp.clock import FakeClock
from wisp.runtime.base import Instance, InstanceListener, InstanceSpec, InstanceState
from wisp.runtime.supervisor import (
    Backoff,
    RevisionSupervisor,
    SupervisorStatus,
    crash_failure,
    newest_first,
)


class FakeBackend:
    """Instances that do nothing until the test says they are ready or crash."""

    name = "fake"

    def __init__(self, clock: FakeClock, logs: Path) -> None:
        self.clock = clock
        self.logs = logs
        self.started: list[Instance] = []
        self.start_times: list[float] = []
        self.stopped: list[Instance] = []
        self.crash_on_start: int | None = None
        self.on_stop: list[object] = []  # hooks run when stop() is entered

    async def start(self, spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        n = len(self.started)
        log_path = self.logs / f"i{n}.log"
        log_path.write_text("")
        inst = Instance(f"i{n}", spec, host="127.0.0.1", port=20000 + n, pid=None,
                        started_at=self.clock.now() + n * 1e-6, log_path=log_path)
        if on_change is not None:
            inst.add_listener(on_change)
        self.started.append(inst)
        self.start_times.append(self.clock.monotonic())
        if self.crash_on_start is not None:
            code = self.crash_on_start
            asyncio.get_running_loop().call_soon(self.crash, inst, code)
        return inst

    async def stop(self, instance: Instance, grace: float) -> int | None:
        for hook in self.on_stop:
            hook(instance)  # type: ignore[operator]
        self.stopped.append(instance)
        instance._set_state(InstanceState.STOPPING, self.clock.now())
        instance._set_state(InstanceState.EXITED, self.clock.now(), 0)
        return 0

    async def wait_ready(self, instance: Instance, timeout: float) -> bool:
        return instance.ready

    def list(self) -> list[Instance]:
        return [i for i in self.started if i.alive]

    async def cleanup_stale(self) -> int:
        return 0

    async def close(self, grace: float) -> None:
        for inst in self.list():
            await self.stop(inst, grace)

    def ready(self, inst: Instance) -> None:
        inst._set_state(InstanceState.READY, self.clock.now())

    def crash(self, inst: Instance, code: int, lines: tuple[str, ...] = ("boom",)) -> None:
        inst.log_path.write_text("".join(f"2024-01-01T00:00:00.000Z {line}\n" for line in lines))
        inst._set_state(InstanceState.EXITED, self.clock.now(), code)


SPEC = InstanceSpec(namespace="default", revision="hello-00001", command=["app"], termination_grace=5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock, tmp_path: Path) -> FakeBackend:
    return FakeBackend(clock, tmp_path)


@pytest.fixture
async def sup(backend: FakeBackend, clock: FakeClock) -> AsyncIterator[RevisionSupervisor]:
    statuses: list[SupervisorStatus] = []
    s = RevisionSupervisor(backend, SPEC, clock, progress_deadline=60, on_change=statuses.append)
    s.statuses = statuses  # type: ignore[attr-defined]
    yield s
    await s.close(0)


async def test_scale_up_starts_instances_and_reports_ready_endpoints(
        sup: RevisionSupervisor, backend: FakeBackend) -> None:
    await sup.scale(2)
    assert len(backend.started) == 2
    assert sup.status == SupervisorStatus(desired=2, actual=2)
    backend.ready(backend.started[1])
    assert sup.status.ready_endpoints == (("127.0.0.1", 20001),)
    assert not sup.status.initial_scale_reached
    backend.ready(backend.started[0])
    assert sup.status.ready == 2 and sup.status.initial_scale_reached
    assert sup.status.ready_endpoints == (("127.0.0.1", 20000), ("127.0.0.1", 20001))


async def test_scale_down_takes_instances_out_of_rotation_before_stopping(
        sup: RevisionSupervisor, backend: FakeBackend) -> None:
    await sup.scale(3)
    for inst in backend.started:
        backend.ready(inst)
    seen_at_stop: list[tuple[tuple[str, int], ...]] = []
    backend.on_stop.append(lambda inst: seen_at_stop.append(sup.status.ready_endpoints))
    await sup.scale(1)
    await asyncio.sleep(0)
    assert [i.id for i in backend.stopped] == ["i2", "i1"]  # newest first
    assert all(("127.0.0.1", 20002) not in eps for eps in seen_at_stop)
    assert sup.status.ready_endpoints == (("127.0.0.1", 20000),)
    assert (sup.status.desired, sup.status.actual) == (1, 1)


def test_default_victims_are_unready_instances_then_the_newest(tmp_path: Path) -> None:
    def inst(n: int, ready: bool) -> Instance:
        i = Instance(f"i{n}", SPEC, host="h", port=n, pid=None, started_at=float(n), log_path=tmp_path)
        if ready:
            i._set_state(InstanceState.READY, 0)
        return i
    pool = [inst(0, True), inst(1, False), inst(2, True), inst(3, True)]
    assert [i.id for i in newest_first(pool, 2)] == ["i1", "i3"]


async def test_custom_victim_picker_is_used(backend: FakeBackend, clock: FakeClock) -> None:
    sup = RevisionSupervisor(backend, SPEC, clock, progress_deadline=60, on_change=lambda s: None,
                             pick_victims=lambda insts, n: sorted(insts, key=lambda i: i.id)[:n])
    await sup.scale(3)
    await sup.scale(2)
    await asyncio.sleep(0)
    assert [i.id for i in backend.stopped] == ["i0"]
    await sup.close(0)


@given(st.integers(min_value=1, max_value=40))
def test_backoff_doubles_from_100ms_and_caps_at_10s(crashes: int) -> None:
    b = Backoff()
    assert b.delay(crashes) == min(10.0, 0.1 * 2 ** (crashes - 1))
    assert b.delay(crashes + 1) >= b.delay(crashes)


async def _advance_in_steps(clock: FakeClock, total: float, step: float = 0.05) -> None:
    for _ in range(round(total / step)):
        await clock.advance(step)


async def test_crash_loop_restarts_on_the_backoff_schedule(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    backend.crash_on_start = 2
    await sup.scale(1)
    await asyncio.sleep(0)  # the first crash happens at t=0
    await _advance_in_steps(clock, 40)
    gaps = [round(b - a, 3) for a, b in zip(backend.start_times, backend.start_times[1:], strict=False)]
    assert gaps[:9] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    failure = sup.status.failure
    assert failure is not None and failure.reason == "ExitCode2"
    assert failure.message == "Container failed with: boom"
    assert sup.status.last_exit_code == 2


async def test_backoff_resets_after_ten_seconds_of_healthy_running(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    await sup.scale(1)
    for _ in range(3):  # three quick crashes: next delay would be 0.8 s
        inst = backend.started[-1]
        backend.crash(inst, 1)
        await _advance_in_steps(clock, 1)
    inst = backend.started[-1]
    backend.ready(inst)
    assert sup.status.failure is None  # healthy again
    await clock.advance(10)
    backend.crash(inst, 1)
    before = len(backend.started)
    await _advance_in_steps(clock, 0.1)
    assert len(backend.started) == before + 1  # restarted after 0.1 s, not 0.8 s


async def test_crash_message_quotes_the_last_ten_log_lines(
        sup: RevisionSupervisor, backend: FakeBackend) -> None:
    await sup.scale(1)
    backend.crash(backend.started[0], 137, tuple(f"line {i}" for i in range(20)))
    failure = sup.status.failure
    assert failure is not None and failure.reason == "ExitCode137"
    assert failure.message == "Container failed with: " + "\n".join(f"line {i}" for i in range(10, 20))


def test_crash_failure_without_output_names_the_exit_code() -> None:
    assert crash_failure(3, ["", "  "]).message == "Container failed with: exit code 3"
    assert len(crash_failure(1, ["x" * 10_000]).message) < 2100


async def test_progress_deadline_fails_and_scales_to_zero(
        backend: FakeBackend, clock: FakeClock) -> None:
    statuses: list[SupervisorStatus] = []
    sup = RevisionSupervisor(backend, SPEC, clock, progress_deadline=5, on_change=statuses.append)
    await sup.scale(2)
    backend.ready(backend.started[0])  # one of two is not enough
    await clock.advance(4.9)
    assert sup.status.failure is None
    await clock.advance(0.2)
    failure = sup.status.failure
    assert failure is not None
    assert failure.reason == "ProgressDeadlineExceeded"
    assert failure.message == "Initial scale was never achieved"
    await asyncio.sleep(0)
    assert len(backend.stopped) == 2 and backend.list() == []
    assert (sup.status.desired, sup.status.actual, sup.status.ready) == (0, 0, 0)
    assert not sup.status.initial_scale_reached
    await sup.scale(2)  # the autoscaler repeating itself does not restart a failed revision
    assert len(backend.started) == 2
    await sup.scale(0)
    await sup.scale(1)  # but scaling from zero again gets a fresh attempt and deadline
    assert len(backend.started) == 3 and sup.status.failure is None
    await clock.advance(5.1)
    assert sup.status.failure is not None
    await sup.close(0)


async def test_progress_deadline_replaces_a_crash_failure(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    backend.crash_on_start = 1
    await sup.scale(1)
    await clock.advance(0.01)
    assert sup.status.failure is not None and sup.status.failure.reason == "ExitCode1"
    await _advance_in_steps(clock, 61, step=0.5)
    assert sup.status.failure is not None and sup.status.failure.reason == "ProgressDeadlineExceeded"
    started = len(backend.started)
    await _advance_in_steps(clock, 30, step=1)
    assert len(backend.started) == started  # no more restarts once failed


async def test_initial_scale_reached_once_is_never_lost_to_the_deadline(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    await sup.scale(1)
    backend.ready(backend.started[0])
    assert sup.status.initial_scale_reached
    await sup.scale(3)  # later scale-ups are not subject to the progress deadline
    await clock.advance(120)
    assert sup.status.failure is None and sup.status.initial_scale_reached


async def test_initial_scale_of_zero_is_reached_at_once(sup: RevisionSupervisor) -> None:
    await sup.scale(0)
    assert sup.status.initial_scale_reached and sup.status.failure is None


async def test_on_change_fires_only_on_changes(sup: RevisionSupervisor, backend: FakeBackend) -> None:
    statuses: list[SupervisorStatus] = sup.statuses  # type: ignore[attr-defined]
    await sup.scale(1)
    await sup.scale(1)
    backend.ready(backend.started[0])
    assert [s.ready for s in statuses] == [0, 1]
    assert len(set(statuses)) == len(statuses)


async def test_close_stops_everything(sup: RevisionSupervisor, backend: FakeBackend) -> None:
    await sup.scale(2)
    await sup.close(0)
    assert backend.list() == [] and sup.status.actual == 0
    with pytest.raises(RuntimeError):
        await sup.scale(1)


async def test_start_that_raises_counts_as_a_crash(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    async def broken(spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        raise OSError("no free port found")
    backend.start = broken  # type: ignore[method-assign]
    await sup.scale(1)
    failure = sup.status.failure
    assert failure is not None and "no free port found" in failure.message


async def test_drain_hook_runs_after_leaving_rotation_and_before_stop(
        backend: FakeBackend, clock: FakeClock) -> None:
    events: list[str] = []
    sup: RevisionSupervisor

    async def drain(inst: Instance) -> None:
        events.append(f"drain {inst.id} endpoints={len(sup.status.ready_endpoints)}")

    backend.on_stop.append(lambda inst: events.append(f"stop {inst.id}"))
    sup = RevisionSupervisor(backend, SPEC, clock, progress_deadline=60, on_change=lambda s: None,
                             drain=drain)
    await sup.scale(1)
    backend.ready(backend.started[0])
    await sup.scale(0)
    await asyncio.sleep(0)
    assert events == ["drain i0 endpoints=0", "stop i0"]
    await sup.close(0)


async def test_roll_replaces_each_instance_only_after_its_replacement_is_ready(
        sup: RevisionSupervisor, backend: FakeBackend) -> None:
    await sup.scale(2)
    for inst in backend.started:
        backend.ready(inst)
    new_spec = InstanceSpec(namespace="default", revision="hello-00001", command=["app"],
                            env={"K_SINK": "http://sink"}, termination_grace=5)
    ready_counts: list[int] = []
    backend.on_stop.append(lambda inst: ready_counts.append(sup.status.ready))
    roll = asyncio.ensure_future(sup.roll(new_spec, ready_timeout=30))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(backend.started) == 3 and backend.started[2].spec.env == {"K_SINK": "http://sink"}
    assert backend.stopped == []  # nothing leaves before its replacement is ready
    backend.ready(backend.started[2])
    for _ in range(20):
        await asyncio.sleep(0)
    backend.ready(backend.started[3])
    assert await roll is True
    await asyncio.sleep(0)
    assert sorted(i.id for i in backend.stopped) == ["i0", "i1"]
    assert all(count >= 2 for count in ready_counts)  # capacity never dropped below two ready
    assert {i.spec.env.get("K_SINK") for i in sup.instances} == {"http://sink"}
    assert (sup.status.desired, sup.status.actual, sup.status.ready) == (2, 2, 2)


async def test_roll_keeps_the_old_instance_when_the_replacement_never_gets_ready(
        sup: RevisionSupervisor, backend: FakeBackend, clock: FakeClock) -> None:
    await sup.scale(1)
    backend.ready(backend.started[0])
    new_spec = InstanceSpec(namespace="default", revision="hello-00001", command=["broken"])
    roll = asyncio.ensure_future(sup.roll(new_spec, ready_timeout=5))
    for _ in range(20):
        await asyncio.sleep(0)
    await clock.advance(6)
    assert await roll is False
    await asyncio.sleep(0)
    assert [i.id for i in backend.stopped] == ["i1"]
    assert [i.id for i in sup.instances] == ["i0"] and sup.status.ready == 1
