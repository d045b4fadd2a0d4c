"""The client and upstream protocols driven with fake transports: parsing, ordering, framing, closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import wisp.dataplane as dataplane
from wisp.dataplane import RouterConfig, RoutingTable
from wisp.dataplane.proxy import ClientConnection, ProxyContext
from wisp.dataplane.table import Endpoint
from wisp.dataplane.upstream import UpstreamConnection


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def get_extra_info(self, key: str) -> object:
        return ("192.0.2.10", 40000) if key == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def can_write_eof(self) -> bool:
        return True


class Harness:
    """One client connection plus one warm pooled upstream connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: RouterConfig | None = None) -> None:
        self.table = RoutingTable()
        self.table.set_host("app.ns.localhost", [("ns/app-1", 100)])
        self.target = self.table.revision("ns/app-1")
        self.target.set_endpoints([("127.0.0.1", 1)])
        self.endpoint: Endpoint = self.target.endpoints[0]
        self.up = UpstreamConnection()
        self.up_t = FakeTransport()
        self.up.connection_made(self.up_t)  # type: ignore[arg-type]
        self.endpoint.pool.put(self.up)
        self.ctx = ProxyContext(self.table, config or RouterConfig(), loop)
        self.conn = ClientConnection(self.ctx)
        self.client_t = FakeTransport()
        self.conn.connection_made(self.client_t)  # type: ignore[arg-type]

    def close(self) -> None:
        self.ctx.wheel.close()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness(asyncio.get_running_loop())
    yield harness
    harness.close()


GET = b"GET /%d HTTP/1.1\r\nHost: app.ns.localhost\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_pipelined_requests_are_forwarded_one_at_a_time_in_order(h: Harness) -> None:
    h.conn.data_received(GET % 1 + GET % 2)
    sent = h.up_t.take()
    assert sent.startswith(b"GET /1 ") and b"GET /2" not in sent
    assert h.client_t.paused  # a complete request waits: stop reading further ones
    h.up.data_received(OK)
    assert h.client_t.take() == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert h.up_t.take().startswith(b"GET /2 ")  # same warm connection, in order
    h.up.data_received(OK)
    assert h.client_t.take().endswith(b"ok") and not h.client_t.paused
    assert h.endpoint.pool.idle == [h.up] and h.target.metrics.responses_2xx == 2


async def test_connection_close_is_honoured(h: Harness) -> None:
    h.conn.data_received(b"GET / HTTP/1.1\r\nHost: app.ns.localhost\r\nConnection: close\r\n\r\n")
    h.up.data_received(OK)
    assert b"Connection: close" in h.client_t.take() and h.client_t.closed
    assert h.endpoint.pool.idle == [h.up]  # the instance side stays reusable


async def test_instance_closing_its_side_is_not_pooled(h: Harness) -> None:
    h.conn.data_received(GET % 1)
    h.up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert h.client_t.take().endswith(b"ok") and not h.client_t.closed
    assert h.endpoint.pool.idle == [] and h.up_t.closed


async def test_interim_responses_are_relayed(h: Harness) -> None:
    h.conn.data_received(b"POST / HTTP/1.1\r\nHost: app.ns.localhost\r\nContent-Length: 2\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert b"Expect: 100-continue" in h.up_t.take()
    h.up.data_received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert h.client_t.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.conn.data_received(b"hi")
    assert h.up_t.take() == b"hi"
    h.up.data_received(OK)
    assert h.client_t.take().startswith(b"HTTP/1.1 200 OK")


async def test_chunked_response_is_rechunked(h: Harness) -> None:
    h.conn.data_received(GET % 1)
    h.up.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert h.client_t.take().endswith(b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    h.up.data_received(b"0\r\n\r\n")
    assert h.client_t.take() == b"0\r\n\r\n"
    assert h.endpoint.pool.idle == [h.up]


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
    (b"GET / HTTP/1.1\r\nHost: app.ns.localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
], ids=["garbage", "no-host", "huge-header"])
async def test_bad_requests_are_rejected(h: Harness, request_bytes: bytes, status: bytes) -> None:
    h.conn.data_received(request_bytes)
    assert h.client_t.take().startswith(b"HTTP/1.1 " + status)
    assert h.up_t.take() == b""


async def test_client_going_away_frees_the_endpoint(h: Harness) -> None:
    h.conn.data_received(GET % 1)
    assert h.endpoint.in_flight == 1 and h.target.metrics.in_flight == 1
    h.conn.connection_lost(None)
    assert h.endpoint.in_flight == 0 and h.target.metrics.in_flight == 0
    assert h.up_t.closed  # mid-response connection cannot be reused


async def test_slow_client_pauses_the_instance(h: Harness) -> None:
    h.conn.data_received(GET % 1)
    h.up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    h.conn.pause_writing()
    assert h.up_t.paused
    h.conn.resume_writing()
    assert not h.up_t.paused


def test_public_api_is_pinned() -> None:
    assert sorted(dataplane.__all__) == [
        "AcquireTimeout", "DataplaneError", "Endpoint", "IngressServer", "LocalHandler", "LocalRequest",
        "LocalResponse", "QueueFull", "RevisionGone", "RevisionMetrics", "RevisionTarget", "RouterConfig",
        "RoutingTable",
    ]
