"""Per-Trigger dispatch: read the broker log from the Trigger's own cursor, filter, deliver.

Each Trigger is an independent consumer of its Broker's stream (spec §3.2: every Trigger sees
every event exactly once for filtering; one delivery per matching Trigger). One asyncio task per
Trigger reads due records, acks the ones its filter rejects in bulk, and runs one delivery task
per matching record, at most `max_in_flight` at a time (ordered mode: one, in log order, and a
failing event blocks the ones behind it until it is delivered or dead-lettered).

A delivery (spec §2.9-2.10):

1. POST the event to the subscriber (binary mode unless `delivery.format: json`) with
   `Prefer: reply`; `knativebrokerttl` is removed on the way out and re-attached to any reply.
2. 2xx is success. A 200 whose body is a CloudEvent is a *reply*: it is published back into the
   same broker (in-process, same stamping and durability as HTTP ingress) before the original is
   acked; if the broker cannot store it the whole delivery fails and is retried. A reply whose TTL
   is exhausted is dropped (the loop guard) and the delivery counts as done. A 200 with a body
   that is not a CloudEvent is plain success — unlike Knative's broker filter, which answers 502
   and so makes the sender retry and duplicate.
3. A retryable failure (transport error, 5xx, 404, 408, 409, 429) is *nacked* with
   `retry_at = now + backoff(n)` so the attempt count survives restarts; retries exhausted (or a
   non-retryable status) sends the original event, with `knativeerrordest`, `knativeerrorcode`
   and `knativeerrordata`, to the dead-letter sink (with the same retry policy, in-task), then
   acks. Without a sink the event is dropped and acked.

A crash between delivery and ack redelivers the event: at-least-once, as the log promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wisp.clock import Clock
from wisp.eventing.broker import TTL_EXTENSION, IngressRejected
from wisp.eventing.cloudevents import (
    CloudEvent,
    CloudEventError,
    NotACloudEventError,
    from_http,
    from_json,
    to_binary,
    to_structured,
)
from wisp.eventing.delivery import DeliveryPolicy, on_failure, with_dead_letter_extensions
from wisp.eventing.filters import Matcher
from wisp.eventing.log import EventLog, EventLogError, Record
from wisp.eventing.metrics import EventingMetrics

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "Outcome",
    "ReplyPublisher",
    "Response",
    "Sender",
    "TriggerDispatcher",
    "TriggerSpec",
    "classify",
    "encode_for_subscriber",
]

log = logging.getLogger("wisp.eventing.dispatch")

DEFAULT_MAX_IN_FLIGHT = 100
DEFAULT_TIMEOUT = 60.0
LEASE = 3600.0
"""Records stay leased while their delivery task owns them; leases are memory-only, so a restart
makes every unacked record due again regardless of this value."""
POLL = 1.0
"""Longest idle wait: catches records nacked before a restart (their retry times are not known
to this process) and refreshes the lag gauge."""
REPLY_FAILURE = 502


@dataclass(frozen=True)
class TriggerSpec:
    """Everything one dispatcher needs, resolved by the Trigger reconciler."""

    namespace: str
    name: str
    broker: str
    uid: str
    subscriber: str
    matcher: Matcher
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    dead_letter_uri: str | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    ordered: bool = False
    broker_url: str = ""

    @property
    def stream(self) -> str:
        return f"{self.namespace}/{self.broker}"

    @property
    def consumer(self) -> str:
        # The uid, not the name: a Trigger deleted and re-created under the same name starts fresh.
        return f"trigger-{self.uid}"

    @property
    def labels(self) -> tuple[str, str, str]:
        return self.namespace, self.broker, self.name


@dataclass(frozen=True, slots=True)
class Response:
    """What a subscriber answered; `status` is None when no answer came (transport error)."""

    status: int | None
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    error: str = ""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Sender(Protocol):
    """Posts one request; never raises for HTTP or transport failures (they are a `Response`).

    `headers` may be shared with other deliveries of the same event: read it, never change it.
    """

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response: ...


ReplyPublisher = Callable[[str, str, CloudEvent], Awaitable[int]]
"""`(namespace, broker, event) -> offset`; raises `IngressRejected` (the broker ingress's publish)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A subscriber's answer, interpreted."""

    ok: bool
    status: int | None
    reply: CloudEvent | None = None
    body: bytes = b""
    retry_after: str | None = None


def classify(resp: Response) -> Outcome:
    """Success, success with a reply event, or failure (a malformed reply counts as 502)."""
    status = resp.status
    if status is None or not 200 <= status <= 299:
        body = resp.body if status is not None else resp.error.encode()
        return Outcome(False, status, body=body, retry_after=resp.header("retry-after"))
    if status != 200 or not (resp.body or resp.header("ce-specversion")):
        return Outcome(True, status)
    try:
        return Outcome(True, status, reply=from_http(resp.headers, resp.body))
    except NotACloudEventError:
        return Outcome(True, status)
    except CloudEventError as e:
        return Outcome(False, REPLY_FAILURE, body=f"malformed reply event: {e}".encode())


def encode_for_subscriber(event: CloudEvent, policy: DeliveryPolicy) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body for a delivery; binary mode unless the policy forces JSON."""
    headers, body = to_structured(event) if policy.format == "json" else to_binary(event)
    headers["prefer"] = "reply"
    return headers, body


class TriggerDispatcher:
    """The consumer loop of one Trigger (see the module docstring)."""

    def __init__(self, spec: TriggerSpec, log: EventLog, sender: Sender, publish: ReplyPublisher,
                 clock: Clock, metrics: EventingMetrics) -> None:
        self.spec = spec
        self._log = log
        self._sender = sender
        self._publish = publish
        self._clock = clock
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._lag_checked = float("-inf")
        self._meters = _Meters(metrics, spec.labels)
        # A read that returned less than it asked for drained everything due at head
        # `_drained_at`; until the head moves or `_recheck` is set (a retry came due, a new spec,
        # an idle wait that ended without a wake-up, ordered mode's next record unblocked) another
        # read would come back empty, so a finished delivery does not cost one.
        self._drained_at: int | None = None
        self._recheck = True

    def update(self, spec: TriggerSpec) -> None:
        """Deliver with a new spec from now on (in-flight deliveries finish with the old one)."""
        self.spec = spec
        self._recheck = True
        if spec.labels != self._meters.labels:
            self._meters = _Meters(self._metrics, spec.labels)
        self._wake.set()

    async def start(self) -> None:
        """Create the consumer (idempotent: a restart resumes the stored cursor) and run."""
        spec = self.spec
        await self._log.create_consumer(spec.stream, spec.consumer, start="latest", ordered=spec.ordered)
        self._task = asyncio.create_task(self._run(), name=f"trigger:{spec.namespace}/{spec.name}")

    async def stop(self) -> None:
        """Cancel the loop and in-flight deliveries; their records become due again."""
        tasks = [t for t in (self._task, *self._inflight, *self._timers) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s/trigger/%s: dispatch loop failed; retrying", self.spec.namespace,
                              self.spec.name)
                await asyncio.sleep(POLL)

    async def _step(self) -> None:
        # Clear before reading: a wake-up that arrives after this point makes the idle wait
        # return at once instead of being lost.
        self._wake.clear()
        spec = self.spec
        free = spec.max_in_flight - len(self._inflight)
        head: int | None = None
        if free > 0:
            head = await self._log.head(spec.stream)
            if self._recheck or head != self._drained_at:
                records = await self._log.read(spec.stream, spec.consumer, free, now=self._clock.now(),
                                               lease=LEASE)
                self._recheck = False
                self._drained_at = head if len(records) < free else None
                if records:
                    await self._dispatch(spec, records)
                    return
        await self._idle(spec, head)

    async def _dispatch(self, spec: TriggerSpec, records: list[Record]) -> None:
        """Ack what the filter rejects in one call; start a delivery task per match."""
        skipped: list[int] = []
        stream = spec.stream
        for record in records:
            decoded = _DECODED.get(stream, record, spec)
            event = decoded.event
            if event is None or not spec.matcher(event.attributes):
                skipped.append(record.offset)
                continue
            task = asyncio.create_task(self._deliver(spec, record, event, decoded.outgoing()))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        if skipped:
            await self._log.ack(spec.stream, spec.consumer, skipped)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if self.spec.ordered:
            self._recheck = True  # the acked record unblocks the one behind it
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s/trigger/%s: delivery task failed: %r", self.spec.namespace, self.spec.name,
                      task.exception())

    async def _idle(self, spec: TriggerSpec, head: int | None) -> None:
        """Sleep until new records, a finished delivery, a retry coming due, or the poll interval."""
        await self._refresh_lag(spec)
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if head is not None:
            waiters.append(asyncio.ensure_future(self._log.wait(spec.stream, POLL, after=head)))
        else:
            waiters.append(asyncio.ensure_future(asyncio.sleep(POLL)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not self._wake.is_set():
                self._recheck = True  # new records, or the poll interval passed (nacks before a restart)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def _start_timer(self, due: float) -> None:
        """Wake the loop once a nacked record is due (on the injected clock's wall time).

        Loop timers may fire a little early (asyncio runs handles within its clock resolution), and a
        record read a hair before `due` is not yet due: sleep again until the wall clock has passed it,
        or the retry would wait for the next idle poll.
        """
        async def wake() -> None:
            while (left := due - self._clock.now()) > 0:
                await self._clock.sleep(left + 0.001)
            self._recheck = True
            self._wake.set()

        timer = asyncio.create_task(wake())
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _refresh_lag(self, spec: TriggerSpec) -> None:
        now = self._clock.monotonic()
        if now - self._lag_checked < POLL:
            return
        self._lag_checked = now
        with contextlib.suppress(EventLogError):
            self._metrics.lag.labels(*spec.labels).set(await self._log.lag(spec.stream, spec.consumer))

    # -- one delivery ------------------------------------------------------------------------
    async def _deliver(self, spec: TriggerSpec, record: Record, event: CloudEvent, outgoing: CloudEvent) -> None:
        """`outgoing` is `event` without the broker TTL (shared by every Trigger delivering it)."""
        outcome = await self._attempt(spec, spec.subscriber, outgoing)
        dest = spec.subscriber
        if outcome.ok and outcome.reply is not None:
            outcome = await self._reply(spec, outcome.reply, event.get(TTL_EXTENSION))
            dest = spec.broker_url or dest
        meters = self._meters
        if outcome.ok:
            await self._log.ack(spec.stream, spec.consumer, [record.offset])
            meters.delivered.inc()
            meters.latency.observe(max(0.0, self._clock.now() - record.appended_at))
            return
        await self._failed(spec, record, event, outcome, dest)

    async def _attempt(self, spec: TriggerSpec, url: str, event: CloudEvent) -> Outcome:
        headers, body = _DECODED.encoded(event, spec.policy)
        resp = await self._sender.send(url, headers, body, spec.policy.timeout or DEFAULT_TIMEOUT)
        return classify(resp)

    async def _reply(self, spec: TriggerSpec, reply: CloudEvent, ttl: object) -> Outcome:
        """Publish a reply into the broker; a full TTL or a vanished broker drops it quietly."""
        try:
            await self._publish(spec.namespace, spec.broker, reply.with_attributes(**{TTL_EXTENSION: ttl}))
        except IngressRejected as e:
            if e.status in (400, 404):
                log.info("%s/trigger/%s: reply %s dropped: %s", spec.namespace, spec.name,
                         reply.id, e.message)
                return Outcome(True, 200)
            retry_after = None if e.retry_after is None else str(e.retry_after)
            return Outcome(False, e.status, body=e.message.encode(), retry_after=retry_after)
        self._meters.replies.inc()
        return Outcome(True, 200)

    async def _failed(self, spec: TriggerSpec, record: Record, event: CloudEvent, outcome: Outcome,
                      dest: str) -> None:
        now = self._clock.now()
        verdict = on_failure(spec.policy, record.attempts + 1, status=outcome.status,
                             retry_after=outcome.retry_after, now=now)
        if verdict.action == "retry":
            await self._log.nack(spec.stream, spec.consumer, record.offset, retry_at=now + verdict.delay)
            self._start_timer(now + verdict.delay)
            self._meters.retried.inc()
            return
        if verdict.action == "dead_letter" and spec.dead_letter_uri:
            attrs = with_dead_letter_extensions(event.attributes, destination=dest, status=outcome.status,
                                                body=outcome.body)
            await self._dead_letter(spec, CloudEvent(attrs, event.data))
        else:
            self._meters.dropped.inc()
            log.warning("%s/trigger/%s: event %s dropped after %d attempt(s), last status %s %s",
                        spec.namespace, spec.name, event.id, record.attempts + 1, outcome.status,
                        outcome.body[:200].decode("utf-8", "replace"))
        await self._log.ack(spec.stream, spec.consumer, [record.offset])

    async def _dead_letter(self, spec: TriggerSpec, event: CloudEvent) -> None:
        """Send to the dead-letter sink with the same retry policy (in-task: the sink is the end)."""
        assert spec.dead_letter_uri is not None
        event = event.with_attributes(**{TTL_EXTENSION: None})
        failures = 0
        while True:
            outcome = await self._attempt(spec, spec.dead_letter_uri, event)
            if outcome.ok:
                self._meters.dead_lettered.inc()
                return
            failures += 1
            verdict = on_failure(spec.policy, failures, status=outcome.status,
                                 retry_after=outcome.retry_after, now=self._clock.now())
            if verdict.action != "retry":
                self._meters.dropped.inc()
                log.error("%s/trigger/%s: dead-letter sink refused event %s (status %s); dropped",
                          spec.namespace, spec.name, event.id, outcome.status)
                return
            await self._clock.sleep(verdict.delay)


class _Meters:
    """One Trigger's metric children, looked up once instead of per event."""

    __slots__ = ("dead_lettered", "delivered", "dropped", "labels", "latency", "replies", "retried")

    def __init__(self, metrics: EventingMetrics, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.delivered: Any = metrics.delivered.labels(*labels)
        self.latency: Any = metrics.latency.labels(*labels)
        self.retried: Any = metrics.retried.labels(*labels)
        self.dropped: Any = metrics.dropped.labels(*labels)
        self.dead_lettered: Any = metrics.dead_lettered.labels(*labels)
        self.replies: Any = metrics.replies.labels(*labels)


class _Decoded:
    """A stored record decoded once for every Trigger of its broker, with what deliveries derive.

    Ten Triggers on one broker read the same record ten times; decoding it, stripping the TTL and
    encoding it for HTTP are the same work each time, so they are done once and shared (events
    are immutable). Encodings are kept per delivery format.
    """

    __slots__ = ("cache", "data", "encodings", "event", "stripped")

    def __init__(self, data: bytes, event: CloudEvent | None, cache: _DecodeCache | None) -> None:
        self.data = data
        self.event = event
        self.cache = cache  # None when the record was too big to keep
        self.stripped: CloudEvent | None = None
        self.encodings: dict[str | None, tuple[dict[str, str], bytes]] = {}

    def outgoing(self) -> CloudEvent:
        """The event as subscribers get it: without `knativebrokerttl`."""
        if self.stripped is None:
            assert self.event is not None
            self.stripped = self.event.with_attributes(**{TTL_EXTENSION: None})
            if self.cache is not None:
                self.cache.remember(self)
        return self.stripped


class _DecodeCache:
    """Recently decoded records, bounded by count and by payload bytes, least recently used out.

    Keyed by (stream, offset) and checked against the record bytes, so two logs holding the same
    stream name in one process can never see each other's events. `encoded` finds a shared
    encoding by the identity of the outgoing event (held by the entry, so its id stays unique).
    """

    def __init__(self, max_entries: int = 4096, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[str, int], _Decoded] = OrderedDict()
        self._by_outgoing: dict[int, _Decoded] = {}
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, stream: str, record: Record, spec: TriggerSpec) -> _Decoded:
        key = (stream, record.offset)
        entry = self._entries.get(key)
        if entry is not None and entry.data == record.data:
            self._entries.move_to_end(key)
            return entry
        event = _decode(spec, record)
        if len(record.data) > self._max_bytes // 4:
            return _Decoded(record.data, event, None)  # a huge record would flush everything else
        entry = _Decoded(record.data, event, self)
        self._put(key, entry)
        return entry

    def remember(self, entry: _Decoded) -> None:
        """Index a cached entry by its outgoing event, so `encoded` can find it."""
        if entry.stripped is not None and entry.cache is self:
            self._by_outgoing[id(entry.stripped)] = entry

    def encoded(self, event: CloudEvent, policy: DeliveryPolicy) -> tuple[dict[str, str], bytes]:
        """`encode_for_subscriber`, shared between deliveries of one cached outgoing event."""
        entry = self._by_outgoing.get(id(event))
        if entry is None or entry.stripped is not event:
            return encode_for_subscriber(event, policy)
        found = entry.encodings.get(policy.format)
        if found is None:
            found = entry.encodings[policy.format] = encode_for_subscriber(event, policy)
        return found

    def _put(self, key: tuple[str, int], entry: _Decoded) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._forget(old)
        self._entries[key] = entry
        self._bytes += len(entry.data)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._forget(evicted)

    def _forget(self, entry: _Decoded) -> None:
        self._bytes -= len(entry.data)
        entry.cache = None  # an evicted entry still being delivered must not re-index itself
        if entry.stripped is not None:
            self._by_outgoing.pop(id(entry.stripped), None)


_DECODED = _DecodeCache()


def _decode(spec: TriggerSpec, record: Record) -> CloudEvent | None:
    try:
        return from_json(record.data)
    except CloudEventError as e:  # only a corrupted log could hold this; never block on it
        log.error("%s/trigger/%s: record %d is not an event (%s); skipped", spec.namespace, spec.name,
                  record.offset, e)
        return None
