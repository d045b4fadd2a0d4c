"""PingSource schedules, events and the tick scheduler (fake clock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wisp.clock import FakeClock
from wisp.eventing.cloudevents import CloudEvent
from wisp.eventing.cron import InvalidSchedule, parse_schedule
from wisp.eventing.ping import MemoryTicks, PingScheduler, PingSpec, SqliteTicks, ping_event, ping_spec

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("text", "after", "expected"), [
    ("* * * * *", T0 + 5, T0 + 60),
    ("*/5 * * * * *", T0 + 1, T0 + 5),            # six fields: seconds come first
    ("@hourly", T0 + 1, T0 + 3600),
    ("CRON_TZ=UTC 30 12 * * *", T0, T0 + 1800),
])
def test_next_tick(text: str, after: float, expected: float) -> None:
    assert parse_schedule(text).next_after(after) == expected


def test_timezone_shifts_the_schedule() -> None:
    # 13:00 in Paris (UTC+1 in March before DST) is 12:00 UTC.
    assert parse_schedule("0 13 * * *", "Europe/Paris").next_after(T0 - 60) == T0


@pytest.mark.parametrize(("text", "tz", "message"), [
    ("* * * *", None, "expected 5 fields"),
    ("61 * * * *", None, "invalid schedule"),
    ("@every 1m", None, "@every"),
    ("@sometimes", None, "unknown descriptor"),
    ("* * * * *", "Mars/Olympus", "unknown time zone"),
    ("", None, "empty"),
])
def test_bad_schedules_are_rejected_with_a_reason(text: str, tz: str | None, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        parse_schedule(text, tz)


def _spec(schedule: str = "* * * * * *", **kw: object) -> PingSpec:
    return PingSpec("ns", "ping", "uid-1", parse_schedule(schedule), "http://sink/", **kw)  # type: ignore[arg-type]


def test_event_has_knative_attributes() -> None:
    spec = _spec(data=b'{"a":1}', content_type="application/json", extensions={"team": "x"})
    event = ping_event(spec, T0, "id-1")
    assert event.type == "dev.knative.sources.ping"
    assert event.source == "/apis/v1/namespaces/ns/pingsources/ping"
    assert event.get("time") == "2024-03-01T12:00:00Z"
    assert event.get("team") == "x"
    assert event.data == b'{"a":1}' and event.get("datacontenttype") == "application/json"


def test_ping_spec_decodes_base64_data() -> None:
    obj = {"metadata": {"namespace": "ns", "name": "p", "uid": "u"},
           "spec": {"schedule": "@hourly", "dataBase64": "aGk=", "contentType": "text/plain"}}
    spec = ping_spec(obj, "http://s/", {})
    assert spec.data == b"hi" and spec.uid == "u"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, CloudEvent]] = []
        self.clock: FakeClock | None = None

    async def __call__(self, spec: PingSpec, event: CloudEvent) -> None:
        assert self.clock is not None
        self.events.append((self.clock.now(), event))


async def _scheduler(clock: FakeClock, ticks: MemoryTicks | SqliteTicks) -> tuple[PingScheduler, Recorder]:
    rec = Recorder()
    rec.clock = clock
    return PingScheduler(clock, ticks, rec), rec


async def test_fires_once_per_tick_on_time() -> None:
    clock = FakeClock(T0 + 0.5)
    sched, rec = await _scheduler(clock, MemoryTicks())
    sched.ensure(_spec())
    await asyncio.sleep(0)
    await clock.advance(3.0)
    await sched.close()
    assert [t for t, _ in rec.events] == [T0 + 1, T0 + 2, T0 + 3]
    assert len({e.id for _, e in rec.events}) == 3


async def test_restart_neither_replays_missed_ticks_nor_repeats_the_last(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 0.5)
    ticks = SqliteTicks(tmp_path / "ticks.db")
    sched, first = await _scheduler(clock, ticks)
    sched.ensure(_spec())
    await asyncio.sleep(0)
    await clock.advance(2.0)
    await sched.close()
    assert [t for t, _ in first.events] == [T0 + 1, T0 + 2]
    ticks.close()

    # "wisp serve" is down for 10 s, then starts again at the same instant as the last tick.
    clock2 = FakeClock(T0 + 2)
    ticks2 = SqliteTicks(tmp_path / "ticks.db")
    sched2, rec2 = await _scheduler(clock2, ticks2)
    sched2.ensure(_spec())
    await asyncio.sleep(0)
    await clock2.advance(1.0)
    await sched2.close()
    assert [t for t, _ in rec2.events] == [T0 + 3]  # T0+2 is not sent again

    clock3 = FakeClock(T0 + 12.5)
    sched3, rec3 = await _scheduler(clock3, ticks2)
    sched3.ensure(_spec())
    await asyncio.sleep(0)
    await clock3.advance(1.0)
    await sched3.close()
    ticks2.close()
    assert [t for t, _ in rec3.events] == [T0 + 13]  # T0+4..T0+12 are not replayed


async def test_updating_the_schedule_restarts_the_runner_and_remove_stops_it() -> None:
    clock = FakeClock(T0 + 0.5)
    sched, rec = await _scheduler(clock, MemoryTicks())
    sched.ensure(_spec())
    await asyncio.sleep(0)
    await clock.advance(1.0)
    sched.ensure(_spec("*/10 * * * * *"))
    await asyncio.sleep(0)
    await clock.advance(10.0)
    sched.remove(("ns", "ping"), forget_uid="uid-1")
    await clock.advance(30.0)
    await sched.close()
    assert [t for t, _ in rec.events] == [T0 + 1, T0 + 10]
