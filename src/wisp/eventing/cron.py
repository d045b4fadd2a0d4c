"""PingSource schedules: parsing and "when is the next tick" (pure, over `croniter`).

Knative parses schedules with robfig/cron's `SecondOptional` parser (spec §2.8), so wisp accepts:

* 5 fields (`minute hour day-of-month month day-of-week`), the standard cron form;
* 6 fields, where the **first** is seconds (`*/5 * * * * *` = every five seconds);
* descriptors `@yearly @annually @monthly @weekly @daily @midnight @hourly`;
* a `CRON_TZ=<zone>` / `TZ=<zone>` prefix, as Knative's `spec.timezone` is implemented with one.

`@every <duration>` is rejected, as Knative rejects it. Time zones are IANA names (zoneinfo); the
default is UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

__all__ = ["DESCRIPTORS", "InvalidSchedule", "Schedule", "parse_schedule", "parse_timezone"]

DESCRIPTORS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_DESCRIPTOR_EXPR = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                    "@hourly": "0 * * * *"}


class InvalidSchedule(ValueError):
    """A schedule or time zone that cannot be used; the message is shown to the user as is."""


def parse_timezone(name: str | None) -> tzinfo:
    """An IANA zone (`Europe/Paris`); empty means UTC. Raises `InvalidSchedule`."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(f"unknown time zone {name!r} (expected an IANA name such as "
                              "'Europe/Paris')") from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the croniter expression, whether it has seconds, and its zone."""

    expression: str
    seconds: bool
    zone: tzinfo

    def next_after(self, after: float) -> float:
        """The first tick strictly after `after` (epoch seconds)."""
        start = datetime.fromtimestamp(after, tz=self.zone)
        it = croniter(self.expression, start, second_at_beginning=self.seconds)
        return float(it.get_next(float))


def _split_tz(text: str) -> tuple[str | None, str]:
    head, _, rest = text.partition(" ")
    for prefix in ("CRON_TZ=", "TZ="):
        if head.startswith(prefix):
            return head[len(prefix):], rest.strip()
    return None, text


def parse_schedule(text: str, timezone: str | None = None) -> Schedule:
    """Validate and parse `text` (see the module docstring). Raises `InvalidSchedule`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchedule("the schedule is empty")
    prefix_tz, body = _split_tz(" ".join(text.split()))
    if prefix_tz is not None and timezone and prefix_tz != timezone:
        raise InvalidSchedule(f"the schedule's {prefix_tz!r} zone conflicts with timezone {timezone!r}")
    zone = parse_timezone(timezone or prefix_tz)
    if body.startswith("@"):
        if body.startswith("@every"):
            raise InvalidSchedule("@every schedules are not supported; use a cron expression")
        if body not in DESCRIPTORS:
            raise InvalidSchedule(f"unknown descriptor {body!r} (expected one of {', '.join(sorted(DESCRIPTORS))})")
        return Schedule(_DESCRIPTOR_EXPR[body], False, zone)
    fields = body.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"expected 5 fields (minute hour day month weekday) or 6 with leading "
                              f"seconds, got {len(fields)} in {text!r}")
    schedule = Schedule(body, len(fields) == 6, zone)
    try:
        schedule.next_after(0.0)
    except (CroniterError, ValueError, KeyError) as e:
        raise InvalidSchedule(f"invalid schedule {text!r}: {e}") from None
    return schedule
