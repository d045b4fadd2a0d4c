"""TriggerDispatcher with a scripted subscriber, an in-memory log and a fake clock."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from wisp.clock import FakeClock
from wisp.eventing.broker import TTL_EXTENSION, BrokerIngress, IngressRejected
from wisp.eventing.cloudevents import CloudEvent, from_http, to_binary, to_json
from wisp.eventing.delivery import DeliveryPolicy, Destination
from wisp.eventing.dispatch import Response, TriggerDispatcher, TriggerSpec, classify
from wisp.eventing.filters import compile_trigger_filter
from wisp.eventing.log.memory import MemoryEventLog
from wisp.eventing.metrics import EventingMetrics

SUB = "http://sub.example/"
DLS = "http://dls.example/"
STREAM = "default/default"


@dataclass
class Subscriber:
    """Records requests; answers from `script` (url -> list of responses, last one repeats)."""

    clock: FakeClock
    script: dict[str, list[Response]] = field(default_factory=dict)
    calls: list[tuple[str, float, CloudEvent, dict[str, str]]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response:
        self.calls.append((url, self.clock.monotonic(), from_http(headers, body), headers))
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        answers = self.script.get(url) or [Response(202)]
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def to(self, url: str) -> list[CloudEvent]:
        return [c[2] for c in self.calls if c[0] == url]


@dataclass
class Harness:
    log: MemoryEventLog
    clock: FakeClock
    sub: Subscriber
    metrics: EventingMetrics
    replies: list[CloudEvent]
    dispatcher: TriggerDispatcher | None = None

    async def start(self, **kw: object) -> TriggerDispatcher:
        spec = TriggerSpec(namespace="default", name="t1", broker="default", uid="u1", subscriber=SUB,
                           matcher=compile_trigger_filter(None, None), broker_url="http://broker/default/default")
        spec = TriggerSpec(**{**spec.__dict__, **kw})
        self.dispatcher = TriggerDispatcher(spec, self.log, self.sub, self._publish, self.clock, self.metrics)
        await self.dispatcher.start()
        return self.dispatcher

    async def _publish(self, ns: str, broker: str, event: CloudEvent) -> int:
        self.replies.append(event)
        return len(self.replies)

    async def send(self, *events: CloudEvent) -> None:
        await self.log.append(STREAM, [to_json(e) for e in events])

    async def until(self, cond: Callable[[], bool], advance: float = 0.0) -> None:
        for _ in range(400):
            if cond():
                return
            if advance:
                await self.clock.advance(advance)
            await asyncio.sleep(0.005)
        raise AssertionError("condition not reached")

    def count(self, name: str) -> float:
        return self.metrics.registry.get_sample_value(
            name, {"namespace": "default", "broker": "default", "trigger": "t1"}) or 0.0


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    clock = FakeClock()
    async with MemoryEventLog(clock=clock) as log:
        harness = Harness(log, clock, Subscriber(clock), EventingMetrics(CollectorRegistry()), [])
        yield harness
        if harness.dispatcher is not None:
            await harness.dispatcher.stop()


def ev(i: int, type_: str = "t.a", **ext: object) -> CloudEvent:
    return CloudEvent.create(type_, "/src", {"i": i}, id=str(i), extensions={TTL_EXTENSION: 200, **ext})


async def test_delivers_only_matching_events_and_acks_the_rest(h: Harness) -> None:
    await h.start(matcher=compile_trigger_filter({"type": "t.a"}, None))
    await h.send(ev(1), ev(2, "t.b"), ev(3))
    await h.until(lambda: len(h.sub.calls) == 2 and h.count("wisp_trigger_events_delivered_total") == 2)
    assert [e.id for e in h.sub.to(SUB)] == ["1", "3"]
    await h.until(lambda: True)
    assert await h.log.lag(STREAM, "trigger-u1") == 0


async def test_delivery_is_binary_with_prefer_reply_and_no_ttl(h: Harness) -> None:
    await h.start()
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.calls) == 1)
    _, _, event, headers = h.sub.calls[0]
    assert headers["prefer"] == "reply"
    assert headers["ce-id"] == "1"
    assert event.get(TTL_EXTENSION) is None
    assert event.json() == {"i": 1}


async def test_json_format_delivers_structured(h: Harness) -> None:
    await h.start(policy=DeliveryPolicy(format="json"))
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.calls) == 1)
    assert h.sub.calls[0][3]["content-type"].startswith("application/cloudevents+json")


async def test_retries_with_exponential_backoff_first_retry_n1(h: Harness) -> None:
    h.sub.script[SUB] = [Response(503), Response(500), Response(200)]
    await h.start(policy=DeliveryPolicy(retry=3, backoff_policy="exponential", backoff_delay=1.0))
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.calls) == 3, advance=0.25)
    times = [c[1] for c in h.sub.calls]
    assert times[1] - times[0] == pytest.approx(2.0, abs=0.3)  # 1 s * 2^1
    assert times[2] - times[1] == pytest.approx(4.0, abs=0.3)  # 1 s * 2^2
    await h.until(lambda: h.count("wisp_trigger_events_delivered_total") == 1)
    assert h.count("wisp_trigger_events_retried_total") == 2


async def test_exhausted_retries_go_to_dead_letter_sink_with_extensions(h: Harness) -> None:
    h.sub.script[SUB] = [Response(500, body=b"boom")]
    policy = DeliveryPolicy(retry=2, backoff_policy="linear", backoff_delay=0.5,
                            dead_letter_sink=Destination(uri=DLS))
    await h.start(policy=policy, dead_letter_uri=DLS)
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.to(DLS)) == 1, advance=0.25)
    assert len(h.sub.to(SUB)) == 3  # first attempt + 2 retries
    dead = h.sub.to(DLS)[0]
    assert dead.id == "1" and dead.json() == {"i": 1}
    assert dead.get("knativeerrordest") == SUB
    assert str(dead.get("knativeerrorcode")) == "500"
    assert base64.b64decode(str(dead.get("knativeerrordata"))) == b"boom"
    await h.until(lambda: h.count("wisp_trigger_events_dead_lettered_total") == 1)


async def test_non_retryable_status_dead_letters_immediately(h: Harness) -> None:
    h.sub.script[SUB] = [Response(400)]
    await h.start(policy=DeliveryPolicy(retry=5, dead_letter_sink=Destination(uri=DLS)), dead_letter_uri=DLS)
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.to(DLS)) == 1)
    assert len(h.sub.to(SUB)) == 1
    assert str(h.sub.to(DLS)[0].get("knativeerrorcode")) == "400"


async def test_failure_without_dead_letter_sink_is_dropped_and_acked(h: Harness) -> None:
    h.sub.script[SUB] = [Response(None, error="refused")]
    await h.start(policy=DeliveryPolicy(retry=1))
    await h.send(ev(1))
    await h.until(lambda: h.count("wisp_trigger_events_dropped_total") == 1, advance=0.1)
    assert len(h.sub.to(SUB)) == 2
    assert await h.log.lag(STREAM, "trigger-u1") == 0


async def test_reply_is_published_with_the_original_ttl(h: Harness) -> None:
    reply = CloudEvent.create("t.reply", "/sub", {"ok": True}, id="r1")
    headers, body = to_binary(reply)
    h.sub.script[SUB] = [Response(200, list(headers.items()), body)]
    await h.start()
    await h.send(ev(1))
    await h.until(lambda: len(h.replies) == 1)
    assert h.replies[0].id == "r1"
    assert str(h.replies[0].get(TTL_EXTENSION)) == "200"


async def test_non_cloudevent_200_body_is_success_without_reply(h: Harness) -> None:
    h.sub.script[SUB] = [Response(200, [("content-type", "text/plain")], b"thanks")]
    await h.start()
    await h.send(ev(1))
    await h.until(lambda: h.count("wisp_trigger_events_delivered_total") == 1)
    assert h.replies == [] and len(h.sub.calls) == 1


async def test_reply_the_broker_cannot_store_fails_the_delivery(h: Harness) -> None:
    reply = CloudEvent.create("t.reply", "/sub", None, id="r1")
    headers, body = to_binary(reply)
    h.sub.script[SUB] = [Response(200, list(headers.items()), body)]
    attempts: list[int] = []

    async def refuse(ns: str, broker: str, event: CloudEvent) -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise IngressRejected(503, "busy", retry_after=1)
        return 1

    dispatcher = await h.start(policy=DeliveryPolicy(retry=2))
    dispatcher._publish = refuse
    await h.send(ev(1))
    await h.until(lambda: h.count("wisp_trigger_events_delivered_total") == 1, advance=0.1)
    assert len(h.sub.calls) == 2 and len(attempts) == 2


async def test_exhausted_reply_ttl_drops_reply_but_acks(h: Harness) -> None:
    reply = CloudEvent.create("t.reply", "/sub", None, id="r1")
    headers, body = to_binary(reply)
    h.sub.script[SUB] = [Response(200, list(headers.items()), body)]

    async def ttl_gone(ns: str, broker: str, event: CloudEvent) -> int:
        raise IngressRejected(400, "knativebrokerttl exhausted")

    dispatcher = await h.start()
    dispatcher._publish = ttl_gone
    await h.send(ev(1))
    await h.until(lambda: h.count("wisp_trigger_events_delivered_total") == 1)
    assert len(h.sub.calls) == 1


async def test_ordered_mode_keeps_one_event_in_flight(h: Harness) -> None:
    h.sub.gate = asyncio.Event()
    await h.start(ordered=True, max_in_flight=1)
    await h.send(ev(1), ev(2), ev(3))
    await h.until(lambda: len(h.sub.calls) == 1)
    await asyncio.sleep(0.05)
    assert len(h.sub.calls) == 1
    h.sub.gate.set()
    await h.until(lambda: len(h.sub.calls) == 3)
    assert [e.id for e in h.sub.to(SUB)] == ["1", "2", "3"]


async def test_unordered_mode_bounds_in_flight(h: Harness) -> None:
    h.sub.gate = asyncio.Event()
    await h.start(max_in_flight=4)
    await h.send(*(ev(i) for i in range(10)))
    await h.until(lambda: len(h.sub.calls) == 4)
    await asyncio.sleep(0.05)
    assert len(h.sub.calls) == 4
    h.sub.gate.set()
    await h.until(lambda: len(h.sub.calls) == 10)


async def test_ordered_failure_blocks_later_events_until_resolved(h: Harness) -> None:
    h.sub.script[SUB] = [Response(503), Response(202)]
    await h.start(ordered=True, max_in_flight=1, policy=DeliveryPolicy(retry=1, backoff_policy="linear",
                                                                       backoff_delay=1.0))
    await h.send(ev(1), ev(2))
    await h.until(lambda: len(h.sub.calls) == 3, advance=0.25)
    assert [e.id for e in h.sub.to(SUB)] == ["1", "1", "2"]


async def test_stop_then_restart_resumes_from_the_cursor(h: Harness) -> None:
    dispatcher = await h.start()
    await h.send(ev(1))
    await h.until(lambda: h.count("wisp_trigger_events_delivered_total") == 1)
    await dispatcher.stop()
    await h.send(ev(2))
    await h.start()
    await h.until(lambda: len(h.sub.calls) == 2)
    assert [e.id for e in h.sub.to(SUB)] == ["1", "2"]


def test_classify_answers() -> None:
    assert classify(Response(202)).ok and classify(Response(204)).ok
    assert not classify(Response(None)).ok
    assert classify(Response(429, [("retry-after", "3")])).retry_after == "3"
    bad = classify(Response(200, [("content-type", "application/cloudevents+json")], b"{nope"))
    assert (bad.ok, bad.status) == (False, 502)


async def test_reply_reenters_a_real_ingress(h: Harness) -> None:
    ingress = BrokerIngress(h.log, h.clock, h.metrics)
    ingress.add_broker("default", "default")
    reply = CloudEvent.create("t.reply", "/sub", None, id="r1")
    headers, body = to_binary(reply)
    h.sub.script[SUB] = [Response(200, list(headers.items()), body), Response(202)]
    dispatcher = await h.start(matcher=compile_trigger_filter(None, [{"prefix": {"type": "t."}}]))
    dispatcher._publish = ingress.publish
    await h.send(ev(1))
    await h.until(lambda: len(h.sub.calls) == 2)
    assert h.sub.to(SUB)[1].id == "r1"
