"""Broker ingress: status codes, stamping, durability-before-202 and backpressure (in-process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import CollectorRegistry

from wisp.clock import FakeClock
from wisp.dataplane.local import LocalRequest
from wisp.eventing.broker import ARRIVAL_EXTENSION, TTL_EXTENSION, BrokerIngress, IngressRejected, stamp
from wisp.eventing.cloudevents import CloudEvent, from_json
from wisp.eventing.log import TemporaryLogError
from wisp.eventing.log.memory import MemoryEventLog
from wisp.eventing.metrics import EventingMetrics

STREAM = "default/default"
BINARY = [(b"ce-specversion", b"1.0"), (b"ce-id", b"1"), (b"ce-source", b"/s"), (b"ce-type", b"t.a"),
          (b"content-type", b"application/json")]


def post(body: bytes = b'{"a":1}', headers: Sequence[tuple[bytes, bytes]] = BINARY,
         path: str = "/default/default", method: str = "POST", query: str = "") -> LocalRequest:
    return LocalRequest(method, path, query, list(headers), body)


@pytest.fixture
async def log() -> AsyncIterator[MemoryEventLog]:
    async with MemoryEventLog() as event_log:
        yield event_log


@pytest.fixture
def ingress(log: MemoryEventLog) -> BrokerIngress:
    ing = BrokerIngress(log, FakeClock(), EventingMetrics(CollectorRegistry()))
    ing.add_broker("default", "default")
    return ing


async def stored(log: MemoryEventLog) -> list[CloudEvent]:
    await log.create_consumer(STREAM, "probe")
    return [from_json(r.data) for r in await log.read(STREAM, "probe", 100, now=2e9)]


async def test_binary_event_is_stored_with_arrival_time_and_ttl(ingress: BrokerIngress, log: MemoryEventLog) -> None:
    resp = await ingress.handle(post())
    assert resp.status == 202
    (event,) = await stored(log)
    assert (event.id, event.type, event.json()) == ("1", "t.a", {"a": 1})
    assert event.get(TTL_EXTENSION) == 255
    assert str(event.get(ARRIVAL_EXTENSION)).startswith("2023-11-14T22:13:20")


async def test_structured_event_is_accepted(ingress: BrokerIngress, log: MemoryEventLog) -> None:
    body = json.dumps({"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": [1]}).encode()
    resp = await ingress.handle(post(body, [(b"content-type", b"application/cloudevents+json")]))
    assert resp.status == 202
    assert [e.id for e in await stored(log)] == ["x"]


@pytest.mark.parametrize(("request_", "status"), [
    (post(b"garbage", [(b"content-type", b"application/cloudevents+json")]), 400),
    (post(b"{}", [(b"content-type", b"text/plain")]), 400),  # no ce- headers: not a CloudEvent
    (post(headers=[*BINARY[:1], (b"ce-id", b"%C0%A0"), *BINARY[2:]]), 400),  # invalid UTF-8 header
    (post(headers=[*BINARY[:1], (b"ce-id", b"bad%zz"), *BINARY[2:]]), 400),
    (post(headers=[(b"ce-specversion", b"1.0"), (b"ce-id", b"1")]), 400),  # source/type missing
    (post(b"x", [(b"content-type", b"application/cloudevents+avro")]), 415),
    (post(b"[]", [(b"content-type", b"application/cloudevents-batch+json")]), 415),
    (post(path="/default/nope"), 404),
    (post(path="/default"), 400),
    (post(method="GET"), 405),
    (post(method="PUT"), 405),
    (post(headers=[*BINARY, (b"ce-knativebrokerttl", b"1")]), 400),
    (post(headers=[*BINARY, (b"ce-knativebrokerttl", b"abc")]), 400),
])
async def test_bad_requests_get_the_right_status_and_store_nothing(
        ingress: BrokerIngress, log: MemoryEventLog, request_: LocalRequest, status: int) -> None:
    resp = await ingress.handle(request_)
    assert resp.status == status, resp.body
    assert await log.head(STREAM) == 0


async def test_non_post_answers_allow_header(ingress: BrokerIngress) -> None:
    resp = await ingress.handle(post(method="DELETE"))
    assert ("allow", "POST, OPTIONS") in list(resp.headers)


async def test_options_answers_webhook_handshake(ingress: BrokerIngress) -> None:
    resp = await ingress.handle(post(method="OPTIONS", headers=[(b"webhook-request-origin", b"example.com")]))
    headers = dict(resp.headers)
    assert resp.status == 200
    assert headers["webhook-allowed-origin"] == "example.com"
    assert "POST" in headers["allow"]


async def test_too_large_body_is_413(log: MemoryEventLog) -> None:
    small = MemoryEventLog(max_message_bytes=100)
    await small.open()
    ing = BrokerIngress(small, FakeClock(), EventingMetrics(CollectorRegistry()))
    ing.add_broker("default", "default")
    assert (await ing.handle(post(b"x" * 200))).status == 413
    assert await small.head(STREAM) == 0


async def test_incoming_ttl_is_decremented() -> None:
    event = CloudEvent.create("t", "/s", extensions={TTL_EXTENSION: 5})
    assert stamp(event, 0.0).get(TTL_EXTENSION) == 4
    with pytest.raises(IngressRejected) as info:
        stamp(event.with_attributes(**{TTL_EXTENSION: 1}), 0.0)
    assert info.value.status == 400


class SlowLog(MemoryEventLog):
    """Appends wait for a gate, so requests pile up as they would behind a slow disk."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def append(self, stream: str, records: Sequence[bytes]) -> list[int]:
        await self.gate.wait()
        return await super().append(stream, records)


async def test_backpressure_answers_429_with_retry_after() -> None:
    slow = SlowLog()
    await slow.open()
    ing = BrokerIngress(slow, FakeClock(), EventingMetrics(CollectorRegistry()), max_pending=2)
    ing.add_broker("default", "default")
    pending = [asyncio.ensure_future(ing.handle(post())) for _ in range(2)]
    await asyncio.sleep(0)
    over = await ing.handle(post())
    assert over.status == 429
    assert ("retry-after", "1") in list(over.headers)
    slow.gate.set()
    assert [r.status for r in await asyncio.gather(*pending)] == [202, 202]
    assert (await ing.handle(post())).status == 202


class BusyLog(MemoryEventLog):
    async def append(self, stream: str, records: Sequence[bytes]) -> list[int]:
        raise TemporaryLogError("database is locked")


async def test_busy_storage_answers_503_with_retry_after() -> None:
    busy = BusyLog()
    await busy.open()
    ing = BrokerIngress(busy, FakeClock(), EventingMetrics(CollectorRegistry()))
    ing.add_broker("default", "default")
    resp = await ing.handle(post())
    assert resp.status == 503
    assert dict(resp.headers)["retry-after"] == "1"


async def test_watch_long_polls_new_events(ingress: BrokerIngress) -> None:
    first = await ingress.handle(post(method="GET", path="/default/default/events", query="timeout=0"))
    assert first.status == 200 and first.body == b""
    seq = dict(first.headers)["x-wisp-seq"]
    waiting = asyncio.ensure_future(ingress.handle(
        post(method="GET", path="/default/default/events", query=f"after={seq}&timeout=5")))
    await asyncio.sleep(0.01)
    assert (await ingress.handle(post())).status == 202
    resp = await asyncio.wait_for(waiting, 2)
    (line,) = resp.body.splitlines()
    assert json.loads(line)["event"]["id"] == "1"


async def test_accepted_and_rejected_are_counted(ingress: BrokerIngress) -> None:
    await ingress.handle(post())
    await ingress.handle(post(b"x", [(b"content-type", b"application/cloudevents+json")]))
    reg = ingress._metrics.registry
    assert reg.get_sample_value("wisp_broker_events_accepted_total", {"namespace": "default", "broker": "default"}) == 1
    assert reg.get_sample_value("wisp_broker_events_rejected_total",
                                {"namespace": "default", "broker": "default", "code": "400"}) == 1
