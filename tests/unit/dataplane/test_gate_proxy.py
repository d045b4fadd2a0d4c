"""The gate through the real proxy over loopback: timeouts, cold-start report, CC with real requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import free_port
from wisp.dataplane import RoutingTable
from wisp.dataplane.server import IngressServer

HOST = "app.ns.localhost"


class Upstream:
    """A raw asyncio HTTP/1.1 instance: /slow, /stream, /stall, /overlap; counts overlaps."""

    def __init__(self) -> None:
        self.busy = 0
        self.overlaps = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                await self._answer(path, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, path: bytes, writer: asyncio.StreamWriter) -> None:
        if path == b"/slow":
            await asyncio.sleep(1.0)
        elif path in (b"/stream", b"/stall"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            gaps = [0.1] * 8 if path == b"/stream" else [1.0]
            for i, gap in enumerate(gaps):
                await asyncio.sleep(gap)
                data = b"part%d\n" % i
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return
        elif path == b"/overlap":
            self.busy += 1
            self.overlaps += self.busy > 1
            await asyncio.sleep(0.02)
            self.busy -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


Rig = tuple[RoutingTable, Upstream, httpx.AsyncClient]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[RoutingTable, Upstream, httpx.AsyncClient]]:
    up = Upstream()
    await up.start()
    table = RoutingTable()
    table.set_host(HOST, [("ns/app-1", 100)])
    table.revision("ns/app-1").set_endpoints([("127.0.0.1", up.port)])
    ingress = IngressServer(table)
    port = free_port()
    await ingress.start("127.0.0.1", port)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"Host": HOST}, timeout=5)
    try:
        yield table, up, client
    finally:
        await client.aclose()
        await ingress.stop(drain_timeout=1)
        await up.stop()


async def test_total_timeout_answers_504_before_the_instance_does(rig: Rig) -> None:
    table, _, client = rig
    table.revision("ns/app-1").timeout_seconds = 0.3
    started = time.monotonic()
    resp = await client.get("/slow")
    assert resp.status_code == 504 and resp.text == "request timeout\n"
    assert 0.3 <= time.monotonic() - started < 0.8


async def test_response_start_timeout_fires_only_while_nothing_was_written(rig: Rig) -> None:
    table, _, client = rig
    target = table.revision("ns/app-1")
    target.timeout_seconds, target.response_start_timeout = 3.0, 0.2
    started = time.monotonic()
    resp = await client.get("/slow")
    assert resp.status_code == 504 and resp.text == "response start timeout\n"
    assert time.monotonic() - started < 0.7
    # A stream whose head came at once runs past the response-start timeout untouched.
    stream = await client.get("/stream")
    assert stream.status_code == 200 and stream.text == "".join(f"part{i}\n" for i in range(8))


async def test_idle_timeout_cuts_a_quiet_stream_but_not_a_busy_one(rig: Rig) -> None:
    table, _, client = rig
    target = table.revision("ns/app-1")
    target.timeout_seconds, target.idle_timeout = 3.0, 0.3
    busy = await client.get("/stream")  # a write every 0.1 s for 0.8 s: longer than the idle timeout
    assert busy.status_code == 200 and busy.text.endswith("part7\n")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get("/stall")  # head, then 1 s of silence: cut after 0.3 s
    # The proxy is still fine afterwards.
    assert (await client.get("/")).status_code == 200


async def test_a_request_held_at_zero_reports_its_cold_start(rig: Rig) -> None:
    table, up, client = rig
    target = table.revision("ns/app-1")
    target.set_endpoints([])
    pokes: list[str] = []
    target.on_demand = pokes.append
    pending = asyncio.create_task(client.get("/"))
    await asyncio.sleep(0.2)
    assert pokes == ["ns/app-1"] and not pending.done()
    target.set_endpoints([("127.0.0.1", up.port)])
    resp = await pending
    assert resp.status_code == 200
    cold = resp.headers["wisp-cold-start"]
    assert cold.endswith("ms") and 150 <= int(cold[:-2]) < 2000
    assert target.metrics.cold_starts == 1
    warm = await client.get("/")
    assert "wisp-cold-start" not in warm.headers


async def test_container_concurrency_one_through_the_proxy(rig: Rig) -> None:
    table, up, client = rig
    target = table.revision("ns/app-1")
    target.container_concurrency = 1
    results = await asyncio.gather(*(client.get("/overlap") for _ in range(20)))
    assert [r.status_code for r in results] == [200] * 20
    assert up.overlaps == 0
    assert target.metrics.in_flight == 0 and target.endpoints[0].in_flight == 0
