"""What every source shares: its sink, its CloudEvent overrides, and "post this event, with retries".

Sources (PingSource, ApiServerSource, ContainerSource, SinkBinding) carry `spec.sink` (a
Destination) and `spec.ceOverrides.extensions` (spec §2.2). The reconcilers resolve the sink into
`status.sinkUri` with a `SinkProvided` condition; the senders post to that URL.

Source delivery follows Knative's adapter defaults: up to 5 retries, exponential from 50 ms, on
the retryable statuses of the data-plane spec; after that the event is lost (and logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wisp.api.meta import ConditionSet
from wisp.clock import Clock
from wisp.controllers.base import Context, Obj
from wisp.eventing.cloudevents import CloudEvent, to_binary
from wisp.eventing.delivery import parse_destination, should_retry
from wisp.eventing.destinations import UnresolvedDestination, resolve_destination
from wisp.eventing.dispatch import Sender

__all__ = [
    "SOURCE_CONDITIONS",
    "SourceRetry",
    "ce_overrides",
    "overrides_env",
    "post_event",
    "resolve_sink",
]

log = logging.getLogger("wisp.eventing.sources")

SOURCE_CONDITIONS = ConditionSet("Ready", ("SinkProvided", "Deployed"))


@dataclass(frozen=True)
class SourceRetry:
    """Knative's adapter retry: `retries` after the first attempt, `delay * 2^(n-1)` between."""

    retries: int = 5
    delay: float = 0.05
    timeout: float = 10.0


def ce_overrides(obj: Obj) -> dict[str, str]:
    """`spec.ceOverrides.extensions` as strings (the values become CloudEvent extensions)."""
    raw = ((obj.get("spec") or {}).get("ceOverrides") or {}).get("extensions") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def overrides_env(obj: Obj) -> str:
    """`K_CE_OVERRIDES`: the JSON of the ceOverrides object (empty when there is none)."""
    overrides = (obj.get("spec") or {}).get("ceOverrides")
    return json.dumps(overrides, separators=(",", ":"), sort_keys=True) if overrides else ""


def resolve_sink(ctx: Context, obj: Obj, conditions: ConditionSet = SOURCE_CONDITIONS,
                 field: str = "sink") -> str | None:
    """Resolve `spec.<field>` into `status.sinkUri` and the `SinkProvided` condition (in place)."""
    now = ctx.now()
    status = obj.setdefault("status", {})
    errors: list[Any] = []
    dest = parse_destination((obj.get("spec") or {}).get(field), f"spec.{field}", errors)
    try:
        if dest is None or errors:
            raise UnresolvedDestination("Invalid", "; ".join(e.render() for e in errors) or f"no spec.{field}")
        uri = resolve_destination(ctx.store, obj["metadata"]["namespace"], dest)
    except UnresolvedDestination as e:
        status.pop("sinkUri", None)
        conditions.mark_false(obj, "SinkProvided", "SinkNotFound", f"{e.reason}: {e.message}", now)
        return None
    status["sinkUri"] = uri
    conditions.mark_true(obj, "SinkProvided", now)
    return uri


async def post_event(sender: Sender, clock: Clock, url: str, event: CloudEvent,
                     retry: SourceRetry = SourceRetry(), what: str = "source") -> bool:
    """Deliver one event to `url`; True on 2xx. Retries retryable failures, then gives up."""
    headers, body = to_binary(event)
    status: int | None = None
    for attempt in range(retry.retries + 1):
        if attempt:
            await clock.sleep(retry.delay * 2 ** (attempt - 1))
        resp = await sender.send(url, dict(headers), body, retry.timeout)
        status = resp.status
        if status is not None and 200 <= status <= 299:
            return True
        if not should_retry(status):
            break
    log.warning("%s: event %s to %s lost after retries (last status %s)", what, event.id, url, status)
    return False


def with_overrides(event: CloudEvent, extensions: Mapping[str, str]) -> CloudEvent:
    """The event with ceOverrides extensions applied (they win over what the source set)."""
    return event.with_attributes(**extensions) if extensions else event
