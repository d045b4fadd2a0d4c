"""Channels (`messaging.knative.dev/v1` Channel and InMemoryChannel): addressable event streams.

Every channel is served in-process on the ingress listener, host `channels.<domain>`, path
`/<namespace>/<plural>/<name>` (`/default/channels/orders`, `/default/inmemorychannels/tmp`), so
a Channel and an InMemoryChannel may share a name. The contract (spec §3.3):

* `POST` a CloudEvent → **202** once it is appended to the channel's stream; **400** malformed
  event, **404** unknown channel, **405** other methods, **413** too large, **429**/**503** with
  `Retry-After` under pressure. `OPTIONS` answers the webhook handshake. Events are not altered.
* **Channel** is durable: its stream lives in the eventing log (`<data-dir>/events.db` with the
  sqlite backend), so accepted events survive a crash and are redelivered.
* **InMemoryChannel** keeps its stream in memory: fast, but **lossy** — events accepted and not
  yet delivered are lost when `wisp serve` stops. Use it for tests and throw-away flows.

Each Subscription is an independent consumer of its channel's stream (see `subscriptions.py`).
"""

from __future__ import annotations

import logging

from wisp.api import kinds
from wisp.api.meta import ConditionSet, get_condition
from wisp.clock import Clock
from wisp.controllers.base import Context, Obj, working_copy
from wisp.dataplane.local import LocalRequest, LocalResponse
from wisp.eventing.broker import IngressRejected
from wisp.eventing.cloudevents import CloudEvent, CloudEventError, from_http, to_json
from wisp.eventing.log import EventLog, EventLogError, RecordTooLarge

__all__ = [
    "CHANNEL",
    "CHANNEL_CONDITIONS",
    "CHANNEL_KINDS",
    "IMC",
    "ChannelIngress",
    "channel_address",
    "channel_host",
    "channel_status",
    "channel_stream",
    "parse_channel_url",
]

log = logging.getLogger("wisp.eventing.channels")

CHANNEL = kinds.lookup("channels")
IMC = kinds.lookup("inmemorychannels")
CHANNEL_KINDS = {CHANNEL.kind: CHANNEL, IMC.kind: IMC}
CHANNEL_CONDITIONS = ConditionSet("Ready", ("Addressable", "DispatcherReady"))
_ALLOW = "POST, OPTIONS"

ChannelKey = tuple[str, str, str]  # (namespace, plural, name)


def channel_host(domain: str) -> str:
    return f"channels.{domain}"


def channel_stream(namespace: str, plural: str, name: str) -> str:
    """The log stream of a channel (three slashes: never a broker's `<ns>/<name>`)."""
    return f"channels/{namespace}/{plural}/{name}"


def channel_address(ctx: Context, namespace: str, plural: str, name: str) -> str:
    return f"{ctx.urls.url(channel_host(ctx.config.network.domain))}/{namespace}/{plural}/{name}"


def parse_channel_url(url: str, domain: str) -> ChannelKey | None:
    """(namespace, plural, name) when `url` is a channel address on this wisp, else None."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if (parts.hostname or "").lower() != channel_host(domain).lower():
        return None
    segs = [s for s in parts.path.split("/") if s]
    if len(segs) != 3 or segs[1] not in (CHANNEL.plural, IMC.plural):
        return None
    return segs[0], segs[1], segs[2]


def channel_status(ctx: Context, obj: Obj, subscribers: list[Obj]) -> Obj:
    """The channel with address, per-subscriber readiness and conditions recomputed."""
    out = working_copy(obj)
    meta = out["metadata"]
    now = ctx.now()
    kind = CHANNEL_KINDS[out.get("kind", CHANNEL.kind)]
    status = out.setdefault("status", {})
    CHANNEL_CONDITIONS.initialize(out, now)
    url = channel_address(ctx, meta["namespace"], kind.plural, meta["name"])
    status["address"] = {"url": url}
    status["subscribers"] = [_subscriber_status(s) for s in subscribers]
    CHANNEL_CONDITIONS.mark_true(out, "Addressable", now)
    CHANNEL_CONDITIONS.mark_true(out, "DispatcherReady", now)
    status["observedGeneration"] = meta.get("generation", 1)
    return out


def _subscriber_status(sub: Obj) -> Obj:
    meta = sub["metadata"]
    ready = (get_condition(sub, "Ready") or {}).get("status", "Unknown")
    return {"uid": meta.get("uid", ""), "observedGeneration": meta.get("generation", 1), "ready": ready}


def _text(status: int, message: str, extra: tuple[tuple[str, str], ...] = ()) -> LocalResponse:
    return LocalResponse(status, [("content-type", "text/plain; charset=utf-8"), *extra],
                         message.encode() + b"\n")


class ChannelIngress:
    """Accepts events for known channels and appends them to the channel's stream."""

    def __init__(self, durable: EventLog, memory: EventLog, clock: Clock) -> None:
        self._durable = durable
        self._memory = memory
        self._clock = clock
        self._channels: dict[ChannelKey, EventLog] = {}

    def add_channel(self, namespace: str, plural: str, name: str) -> EventLog:
        """Register a channel; returns the log its stream lives in."""
        backing = self._memory if plural == IMC.plural else self._durable
        self._channels[(namespace, plural, name)] = backing
        return backing

    def remove_channel(self, namespace: str, plural: str, name: str) -> EventLog | None:
        return self._channels.pop((namespace, plural, name), None)

    def log_for(self, plural: str) -> EventLog:
        return self._memory if plural == IMC.plural else self._durable

    def has_channel(self, namespace: str, plural: str, name: str) -> bool:
        return (namespace, plural, name) in self._channels

    async def publish(self, namespace: str, plural: str, name: str, event: CloudEvent) -> int:
        """Append one event to a channel's stream; raises `IngressRejected` (404, 413, 503, 500)."""
        backing = self._channels.get((namespace, plural, name))
        if backing is None:
            raise IngressRejected(404, f"channel {namespace}/{plural}/{name} not found")
        try:
            (offset,) = await backing.append(channel_stream(namespace, plural, name), [to_json(event)])
        except RecordTooLarge as e:
            raise IngressRejected(413, str(e)) from e
        except EventLogError as e:
            if backing.capabilities.is_retryable(e):
                raise IngressRejected(503, f"event storage is busy: {e}", retry_after=1) from e
            log.error("%s/%s/%s: append failed: %s", namespace, plural, name, e)
            raise IngressRejected(500, "event storage failed") from e
        return offset

    async def handle(self, req: LocalRequest) -> LocalResponse:
        """The local handler for `channels.<domain>`."""
        parts = [p for p in req.path.split("/") if p]
        if len(parts) != 3:
            return _text(404, "expected a path of the form /<namespace>/<channels|inmemorychannels>/<name>")
        if req.method == "OPTIONS":
            headers = [("allow", _ALLOW), ("webhook-allowed-origin", req.header("webhook-request-origin") or "*"),
                       ("webhook-allowed-rate", "*")]
            return LocalResponse(200, headers, b"")
        if req.method != "POST":
            return _text(405, f"method {req.method} not allowed", (("allow", _ALLOW),))
        namespace, plural, name = parts
        try:
            if not self.has_channel(namespace, plural, name):
                raise IngressRejected(404, f"channel {namespace}/{plural}/{name} not found")
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers]
            try:
                event = from_http(headers, req.body)
            except CloudEventError as e:
                raise IngressRejected(e.status, e.message) from e
            await self.publish(namespace, plural, name, event)
        except IngressRejected as e:
            extra = (("retry-after", str(e.retry_after)),) if e.retry_after is not None else ()
            return _text(e.status, e.message, extra)
        return LocalResponse(202, [], b"")
