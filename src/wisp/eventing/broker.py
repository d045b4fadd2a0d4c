"""Broker ingress: the in-process handler behind every Broker's `status.address.url`.

It serves host `broker-ingress.<domain>` on the ingress listener, path `/<namespace>/<broker>`.
The contract (spec §1.6, §2.10, §3.3):

* `POST` a CloudEvent (binary or structured mode) → **202** only once the event is durably
  appended to the broker's log; 400 malformed/invalid event or exhausted TTL, 404 unknown broker,
  405 other methods (`Allow: POST, OPTIONS`), 413 too large for the log, 415 unsupported
  format (including batches), 429 + `Retry-After` when too many appends are pending, 503 +
  `Retry-After` when storage is briefly unavailable, 500 when it failed.
* `OPTIONS` answers the CloudEvents webhook abuse-protection handshake.
* The stored event carries `knativearrivaltime` and `knativebrokerttl` (255 when absent,
  otherwise the incoming value minus one; an event that arrives with a TTL ≤ 1 is refused,
  which is what ends reply loops).
* `GET /<namespace>/<broker>/events?after=N&timeout=S` long-polls the most recent accepted
  events (newline-delimited JSON); `wisp event watch` tails a broker with it.

Events are stored in the JSON event format: one decode at ingress, no re-encoding per Trigger
beyond what the subscriber's content mode needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs

from wisp.clock import Clock
from wisp.dataplane.local import LocalRequest, LocalResponse
from wisp.eventing.cloudevents import CloudEvent, CloudEventError, from_http, to_json
from wisp.eventing.log import EventLog, EventLogError, RecordTooLarge
from wisp.eventing.metrics import EventingMetrics

__all__ = [
    "ARRIVAL_EXTENSION",
    "MAX_TTL",
    "TTL_EXTENSION",
    "BrokerIngress",
    "IngressRejected",
    "RecentEvents",
    "stamp",
    "stream_name",
]

log = logging.getLogger("wisp.eventing.broker")

TTL_EXTENSION = "knativebrokerttl"
ARRIVAL_EXTENSION = "knativearrivaltime"
MAX_TTL = 255
DEFAULT_MAX_PENDING = 4096
RECENT_EVENTS = 1000
_ALLOW = "POST, OPTIONS"


def stream_name(namespace: str, broker: str) -> str:
    """The event log stream of one Broker."""
    return f"{namespace}/{broker}"


class IngressRejected(Exception):
    """The ingress refuses an event; `status` (and `retry_after`) become the HTTP answer."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _arrival(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ttl(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise IngressRejected(400, f"{TTL_EXTENSION} must be an integer, got {value!r}") from None


def stamp(event: CloudEvent, now: float, max_ttl: int = MAX_TTL) -> CloudEvent:
    """The event as the broker stores it: arrival time set, TTL set or decremented (pure)."""
    raw = event.get(TTL_EXTENSION)
    ttl = max_ttl if raw is None else _ttl(raw) - 1
    if ttl <= 0:
        raise IngressRejected(400, f"{TTL_EXTENSION} exhausted: the event looped through the broker "
                                   "too many times")
    return event.with_attributes(**{TTL_EXTENSION: ttl, ARRIVAL_EXTENSION: _arrival(now)})


@dataclass
class RecentEvents:
    """The last accepted events of one broker, for `wisp event watch` (memory only, bounded)."""

    capacity: int = RECENT_EVENTS
    seq: int = 0
    items: deque[tuple[int, bytes]] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, data: bytes) -> None:
        self.seq += 1
        self.items.append((self.seq, data))
        if len(self.items) > self.capacity:
            self.items.popleft()
        self.changed.set()
        self.changed = asyncio.Event()

    def after(self, seq: int) -> list[tuple[int, bytes]]:
        return [item for item in self.items if item[0] > seq]


def _text(status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> LocalResponse:
    headers = [("content-type", "text/plain; charset=utf-8"), *extra]
    return LocalResponse(status, headers, message.encode("utf-8") + b"\n")


class BrokerIngress:
    """Accepts events for the Brokers it knows and appends them to their streams."""

    def __init__(self, log: EventLog, clock: Clock, metrics: EventingMetrics, *,
                 max_pending: int = DEFAULT_MAX_PENDING, max_ttl: int = MAX_TTL) -> None:
        self._log = log
        self._clock = clock
        self._metrics = metrics
        self._max_pending = max_pending
        self._max_ttl = max_ttl
        self._pending = 0
        self._brokers: dict[tuple[str, str], RecentEvents] = {}

    # -- broker registry (driven by the Broker reconciler) ---------------------------------
    def add_broker(self, namespace: str, name: str) -> None:
        self._brokers.setdefault((namespace, name), RecentEvents())

    def remove_broker(self, namespace: str, name: str) -> None:
        self._brokers.pop((namespace, name), None)

    def has_broker(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._brokers

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, namespace: str, name: str, event: CloudEvent) -> int:
        """Stamp and durably append one event; returns its offset. Raises `IngressRejected`.

        Dispatchers call this directly for reply events (the spec allows replies to bypass HTTP).
        """
        recent = self._brokers.get((namespace, name))
        if recent is None:
            raise IngressRejected(404, f"broker {namespace}/{name} not found")
        if self._pending >= self._max_pending:
            raise IngressRejected(429, "broker ingress is overloaded, retry later", retry_after=1)
        data = to_json(stamp(event, self._clock.now(), self._max_ttl))
        self._pending += 1
        try:
            (offset,) = await self._log.append(stream_name(namespace, name), [data])
        except RecordTooLarge as e:
            raise IngressRejected(413, str(e)) from e
        except EventLogError as e:
            if self._log.capabilities.is_retryable(e):
                raise IngressRejected(503, f"event storage is busy: {e}", retry_after=1) from e
            log.error("%s/broker/%s: append failed: %s", namespace, name, e)
            raise IngressRejected(500, "event storage failed") from e
        finally:
            self._pending -= 1
        recent.add(data)
        self._metrics.accepted.labels(namespace, name).inc()
        return offset

    # -- HTTP ------------------------------------------------------------------------------
    async def handle(self, req: LocalRequest) -> LocalResponse:
        """The local handler the routing table calls for `broker-ingress.<domain>`."""
        parts = [p for p in req.path.split("/") if p]
        if len(parts) == 3 and parts[2] == "events":
            return await self._watch(parts[0], parts[1], req)
        if len(parts) != 2:
            return _text(404 if len(parts) > 2 else 400, "expected a path of the form /<namespace>/<broker>")
        namespace, name = parts
        if req.method == "OPTIONS":
            return self._handshake(req)
        if req.method != "POST":
            return _text(405, f"method {req.method} not allowed", (("allow", _ALLOW),))
        try:
            await self._accept(namespace, name, req)
        except IngressRejected as e:
            return self._rejected(namespace, name, e)
        return LocalResponse(202, [], b"")

    async def _accept(self, namespace: str, name: str, req: LocalRequest) -> None:
        if (namespace, name) not in self._brokers:
            raise IngressRejected(404, f"broker {namespace}/{name} not found")
        limit = self._log.capabilities.max_message_bytes
        if len(req.body) > limit:
            raise IngressRejected(413, f"event body of {len(req.body)} bytes exceeds the limit of {limit}")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers]
        try:
            event = from_http(headers, req.body)
        except CloudEventError as e:
            raise IngressRejected(e.status, e.message) from e
        await self.publish(namespace, name, event)

    def _rejected(self, namespace: str, name: str, e: IngressRejected) -> LocalResponse:
        if (namespace, name) in self._brokers:
            self._metrics.rejected.labels(namespace, name, str(e.status)).inc()
        extra = (("retry-after", str(e.retry_after)),) if e.retry_after is not None else ()
        return _text(e.status, e.message, extra)

    @staticmethod
    def _handshake(req: LocalRequest) -> LocalResponse:
        """CloudEvents webhook abuse protection: any origin, any rate (as Knative's ingress)."""
        headers = [("allow", _ALLOW), ("webhook-allowed-origin", req.header("webhook-request-origin") or "*"),
                   ("webhook-allowed-rate", "*")]
        return LocalResponse(200, headers, b"")

    async def _watch(self, namespace: str, name: str, req: LocalRequest) -> LocalResponse:
        if req.method != "GET":
            return _text(405, f"method {req.method} not allowed", (("allow", "GET"),))
        recent = self._brokers.get((namespace, name))
        if recent is None:
            return _text(404, f"broker {namespace}/{name} not found")
        after, timeout = _watch_params(parse_qs(req.query))
        if after < 0:
            after = recent.seq
        if not recent.after(after) and timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recent.changed.wait(), timeout)
        items = recent.after(after)
        body = b"".join(b'{"seq":%d,"event":%s}\n' % (seq, data) for seq, data in items)
        last = items[-1][0] if items else after
        return LocalResponse(200, [("content-type", "application/x-ndjson"), ("x-wisp-seq", str(last))], body)


def _watch_params(query: Mapping[str, list[str]]) -> tuple[int, float]:
    try:
        after = int(query.get("after", ["-1"])[0])
        timeout = min(max(float(query.get("timeout", ["10"])[0]), 0.0), 30.0)
    except ValueError:
        return -1, 0.0
    return after, timeout
