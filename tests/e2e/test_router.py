"""End-to-end tests of the ingress router over real loopback sockets, with real backend servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import websockets.asyncio.client as ws_client
import websockets.asyncio.server as ws_server

from tests.support import REPO, free_port, wait_for_port
from wisp.dataplane import IngressServer, LocalRequest, LocalResponse, RouterConfig, RoutingTable

pytestmark = pytest.mark.e2e


# --------------------------------------------------------------------------------------------------
# A small HTTP/1.1 backend on asyncio streams: keep-alive, Content-Length and chunked bodies.


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    reader: asyncio.StreamReader
    length: int | None
    chunked: bool
    body: bytes = b""
    consumed: bool = False

    async def read_body(self) -> bytes:
        chunks = [c async for c in self.stream()]
        self.body = b"".join(chunks)
        return self.body

    async def stream(self) -> AsyncIterator[bytes]:
        self.consumed = True
        if self.chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    return
                data = await self.reader.readexactly(size)
                await self.reader.readline()
                yield data
        elif self.length:
            left = self.length
            while left:
                data = await self.reader.read(min(left, 1 << 16))
                if not data:
                    raise ConnectionError("body cut short")
                left -= len(data)
                yield data


@dataclass
class Resp:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterator[bytes] = b""
    close_after: bool = False  # close the socket after answering, without saying so


Handler = Callable[[Req], Awaitable[Resp]]


class Backend:
    """An instance stand-in that records what it saw."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[Req] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        raw = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
        headers: dict[str, str] = {}
        for k, v in raw:
            headers[k.lower()] = f"{headers[k.lower()]}, {v}" if k.lower() in headers else v
        length = int(headers["content-length"]) if "content-length" in headers else None
        req = Req(method, path, headers, raw, reader, length,  # type: ignore[arg-type]
                  headers.get("transfer-encoding", "") == "chunked")
        self.requests.append(req)
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        resp = await self.handler(req)
        if not req.consumed:
            async for _ in req.stream():
                pass
        await self._write(writer, resp, head_only=method == "HEAD")
        return not resp.close_after and headers.get("connection", "").lower() != "close"

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, resp: Resp, head_only: bool) -> None:
        out = [f"HTTP/1.1 {resp.status} X\r\n".encode()]
        out += [f"{k}: {v}\r\n".encode() for k, v in resp.headers]
        if isinstance(resp.body, bytes):
            out.append(b"Content-Length: %d\r\n\r\n" % len(resp.body))
            if not head_only:
                out.append(resp.body)
            writer.write(b"".join(out))
            await writer.drain()
            return
        writer.write(b"".join(out) + b"Transfer-Encoding: chunked\r\n\r\n")
        async for piece in resp.body:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def echo(req: Req) -> Resp:
    body = await req.read_body()
    return Resp(200, [("X-Path", req.path)], body or req.path.encode())


def named(name: str) -> Handler:
    async def handler(req: Req) -> Resp:
        await req.read_body()
        return Resp(200, [], name.encode())

    return handler


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
async def backends() -> AsyncIterator[Callable[[Handler], Awaitable[Backend]]]:
    made: list[Backend] = []

    async def make(handler: Handler) -> Backend:
        b = await Backend(handler).start()
        made.append(b)
        return b

    yield make
    for b in made:
        await b.close()


@dataclass
class Router:
    table: RoutingTable
    server: IngressServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def client(self, **kw: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10.0, **kw)  # type: ignore[arg-type]

    def route(self, host: str, *addrs: tuple[str, int], key: str | None = None) -> str:
        key = key or f"default/{host.split('.')[0]}-00001"
        self.table.set_host(host, [(key, 100)])
        self.table.revision(key).set_endpoints(list(addrs))
        return key


@pytest.fixture
async def router_factory() -> AsyncIterator[Callable[..., Awaitable[Router]]]:
    servers: list[IngressServer] = []

    async def make(config: RouterConfig | None = None) -> Router:
        table = RoutingTable()
        server = IngressServer(table, config or RouterConfig())
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return Router(table, server)

    yield make
    for s in servers:
        await s.stop(drain_timeout=1.0)


@pytest.fixture
async def router(router_factory: Callable[..., Awaitable[Router]]) -> Router:
    return await router_factory()


# --------------------------------------------------------------------------------------------------
# Routing


async def test_routes_by_host_case_insensitively_and_ignores_port(router: Router, backends) -> None:
    a, b = await backends(named("a")), await backends(named("b"))
    router.route("a.default.localhost", a.addr)
    router.route("b.default.localhost", b.addr)
    async with router.client() as c:
        assert (await c.get("/", headers={"Host": "a.default.localhost"})).text == "a"
        assert (await c.get("/", headers={"Host": "B.Default.LOCALHOST:8080"})).text == "b"


async def test_unknown_host_is_404_naming_the_host(router: Router) -> None:
    async with router.client() as c:
        r = await c.get("/", headers={"Host": "nope.default.localhost"})
    assert r.status_code == 404
    assert "nope.default.localhost" in r.text


async def test_weighted_split_is_per_request(router: Router, backends) -> None:
    one, two = await backends(named("one")), await backends(named("two"))
    router.table.set_host("split.default.localhost", [("default/one", 50), ("default/two", 50)])
    router.table.revision("default/one").set_endpoints([one.addr])
    router.table.revision("default/two").set_endpoints([two.addr])
    seen = {"one": 0, "two": 0}
    async with router.client() as c:
        for _ in range(400):
            seen[(await c.get("/", headers={"Host": "split.default.localhost"})).text] += 1
    assert seen["one"] >= 100 and seen["two"] >= 100, seen


@pytest.mark.parametrize("enabled", [True, False])
async def test_tag_header_routing(router_factory, backends, enabled: bool) -> None:
    router = await router_factory(RouterConfig(tag_header_routing=enabled))
    main, cand = await backends(named("main")), await backends(named("candidate"))
    router.table.set_host("svc.default.localhost", [("default/svc-1", 100)], tags={"candidate": "default/svc-2"})
    router.table.revision("default/svc-1").set_endpoints([main.addr])
    router.table.revision("default/svc-2").set_endpoints([cand.addr])
    async with router.client() as c:
        tagged = await c.get("/", headers={"Host": "svc.default.localhost", "Knative-Serving-Tag": "candidate"})
        unknown = await c.get("/", headers={"Host": "svc.default.localhost", "Knative-Serving-Tag": "zzz"})
    assert tagged.text == ("candidate" if enabled else "main")
    assert unknown.text == "main"


# --------------------------------------------------------------------------------------------------
# Headers the application sees


async def test_forwarding_headers_and_traceparent_reach_the_app(router: Router, backends) -> None:
    app = await backends(echo)
    router.route("hdr.default.localhost", app.addr)
    async with router.client() as c:
        await c.get("/", headers={"Host": "hdr.default.localhost:8080", "Knative-Serving-Revision": "x",
                                  "Knative-Serving-Namespace": "y", "Connection": "keep-alive, X-Secret",
                                  "X-Secret": "hop", "X-Forwarded-For": "203.0.113.9"})
        await c.get("/", headers={"Host": "hdr.default.localhost", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16
                                  + "-01", "Forwarded": "for=1.2.3.4", "X-Forwarded-Proto": "https"})
    first, second = (r.headers for r in app.requests)
    assert first["host"] == "hdr.default.localhost:8080"
    assert first["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert first["x-forwarded-proto"] == "http"
    assert first["forwarded"] == 'for=203.0.113.9;host="hdr.default.localhost:8080";proto=http, for=127.0.0.1'
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first["traceparent"])
    for internal in ("knative-serving-revision", "knative-serving-namespace", "x-secret"):
        assert internal not in first
    # Present values are kept, never overwritten.
    assert second["traceparent"] == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert second["forwarded"] == "for=1.2.3.4"
    assert second["x-forwarded-proto"] == "https"
    assert second["x-forwarded-for"] == "127.0.0.1"


async def test_k_original_host_becomes_host(router: Router, backends) -> None:
    app = await backends(echo)
    router.route("act.default.localhost", app.addr)
    async with router.client() as c:
        await c.get("/", headers={"Host": "act.default.localhost", "K-Original-Host": "orig.example.com"})
    seen = app.requests[0].headers
    assert seen["host"] == "orig.example.com"
    assert "k-original-host" not in seen


# --------------------------------------------------------------------------------------------------
# Connections, bodies, streaming


async def test_upstream_connections_are_reused(router: Router, backends) -> None:
    app = await backends(echo)
    router.route("ka.default.localhost", app.addr)
    async with router.client() as c:
        for i in range(30):
            r = await c.get(f"/{i}", headers={"Host": "ka.default.localhost"})
            assert r.text == f"/{i}"
        await asyncio.gather(*(c.get("/", headers={"Host": "ka.default.localhost"}) for _ in range(20)))
    assert app.connections <= 20  # one for the sequential run, at most 20 for the burst
    sequential = app.connections
    async with router.client() as c:
        for _ in range(10):
            await c.get("/", headers={"Host": "ka.default.localhost"})
    assert app.connections == sequential  # warm pooled connections, no new dial


async def test_post_bodies_content_length_and_chunked(router: Router, backends) -> None:
    app = await backends(echo)
    router.route("post.default.localhost", app.addr)

    async def gen() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 1000

    async with router.client() as c:
        r1 = await c.post("/", content=b"x" * 300_000, headers={"Host": "post.default.localhost"})
        r2 = await c.post("/", content=gen(), headers={"Host": "post.default.localhost"})
    assert r1.content == b"x" * 300_000
    assert r2.content == b"".join([bytes([65 + i % 26]) * 1000 for i in range(50)])
    assert app.requests[1].chunked


async def test_download_is_streamed(router: Router, backends) -> None:
    got_first = asyncio.Event()

    async def slow_stream(req: Req) -> Resp:
        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.wait_for(got_first.wait(), 5)  # only continues once the client saw chunk 1
            yield b"second"

        return Resp(200, [], body())

    app = await backends(slow_stream)
    router.route("dl.default.localhost", app.addr)
    async with router.client() as c, c.stream("GET", "/", headers={"Host": "dl.default.localhost"}) as r:
        parts = []
        async for piece in r.aiter_raw():
            parts.append(piece)
            got_first.set()
    assert b"".join(parts) == b"firstsecond"


async def test_expect_100_continue(router: Router, backends) -> None:
    app = await backends(echo)
    router.route("exp.default.localhost", app.addr)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.server.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: exp.default.localhost\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"hello")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(5) == b"hello"
    writer.close()


async def test_pipelined_requests_are_answered_in_order(router: Router, backends) -> None:
    async def slow_first(req: Req) -> Resp:
        if req.path == "/1":
            await asyncio.sleep(0.1)
        return Resp(200, [], req.path.encode())

    app = await backends(slow_first)
    router.route("pipe.default.localhost", app.addr)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.server.port)
    writer.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: pipe.default.localhost\r\n\r\n" % i for i in (1, 2, 3)))
    bodies = []
    for _ in range(3):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        bodies.append(await reader.readexactly(length))
    assert bodies == [b"/1", b"/2", b"/3"]
    writer.close()


async def test_head_and_http10_close_delimited(router: Router, backends) -> None:
    async def close_delimited(req: Req) -> Resp:
        return Resp(200, [("Content-Type", "text/plain")], b"abc")

    app = await backends(close_delimited)
    router.route("old.default.localhost", app.addr)
    reader, writer = await asyncio.open_connection("127.0.0.1", router.server.port)
    writer.write(b"HEAD / HTTP/1.1\r\nHost: old.default.localhost\r\n\r\n"
                 b"GET / HTTP/1.0\r\nHost: old.default.localhost\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"Content-Length: 3" in head
    rest = await asyncio.wait_for(reader.read(), 5)  # HTTP/1.0 without keep-alive: closed after
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"\r\n\r\nabc")
    writer.close()


async def test_websocket_echo_through_the_proxy(router: Router) -> None:
    async def echo_ws(conn: ws_server.ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    async with ws_server.serve(echo_ws, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        router.route("127.0.0.1", ("127.0.0.1", port), key="default/ws-1")
        async with ws_client.connect(f"ws://127.0.0.1:{router.server.port}/chat") as conn:
            for msg in ("hello", "x" * 100_000, b"\x00\x01binary"):
                await conn.send(msg)
                assert await asyncio.wait_for(conn.recv(), 5) == msg


# --------------------------------------------------------------------------------------------------
# Scale from zero, timeouts, failures


async def test_request_held_at_zero_succeeds_once_an_endpoint_is_ready(router: Router, backends) -> None:
    app = await backends(named("woke"))
    router.table.set_host("cold.default.localhost", [("default/cold-1", 100)])
    target = router.table.revision("default/cold-1")
    pokes: list[str] = []
    target.on_demand = pokes.append
    async with router.client() as c:
        pending = asyncio.create_task(c.get("/", headers={"Host": "cold.default.localhost"}))
        for _ in range(100):
            if pokes:
                break
            await asyncio.sleep(0.01)
        assert pokes == ["default/cold-1"] and not pending.done()
        assert target.metrics.queued == 1
        target.set_endpoints([app.addr])
        r = await asyncio.wait_for(pending, 5)
    assert r.status_code == 200 and r.text == "woke"
    assert target.metrics.queued == 0 and target.metrics.in_flight == 0


async def test_no_endpoint_within_timeout_is_504(router: Router) -> None:
    router.table.set_host("never.default.localhost", [("default/never-1", 100)])
    router.table.revision("default/never-1").timeout_seconds = 0.3
    async with router.client() as c:
        started = time.monotonic()
        r = await c.get("/", headers={"Host": "never.default.localhost"})
    assert r.status_code == 504
    assert 0.25 < time.monotonic() - started < 3


async def test_slow_response_times_out_with_504(router: Router, backends) -> None:
    async def stuck(req: Req) -> Resp:
        await asyncio.sleep(5)
        return Resp()

    app = await backends(stuck)
    key = router.route("slow.default.localhost", app.addr)
    router.table.revision(key).timeout_seconds = 0.3
    async with router.client() as c:
        r = await c.get("/", headers={"Host": "slow.default.localhost"})
    assert r.status_code == 504
    assert router.table.revision(key).metrics.responses_5xx == 1


async def test_refused_endpoint_is_retried_on_another(router: Router, backends) -> None:
    app = await backends(named("alive"))
    dead = ("127.0.0.1", free_port())
    router.route("retry.default.localhost", app.addr, dead)
    async with router.client() as c:
        for _ in range(20):
            r = await c.get("/", headers={"Host": "retry.default.localhost"})
            assert r.status_code == 200 and r.text == "alive"


async def test_only_dead_endpoint_is_502(router: Router) -> None:
    router.route("dead.default.localhost", ("127.0.0.1", free_port()))
    async with router.client() as c:
        r = await c.get("/", headers={"Host": "dead.default.localhost"})
    assert r.status_code == 502


async def test_idle_connections_closed_by_the_instance_cause_no_errors(router: Router, backends) -> None:
    async def closes(req: Req) -> Resp:
        # Answers as keep-alive, then drops the socket: the pooled connection goes stale.
        return Resp(200, [], req.path.encode(), close_after=True)

    app = await backends(closes)
    router.route("stale.default.localhost", app.addr)
    async with router.client() as c:
        for i in range(40):
            r = await c.post(f"/{i}", content=b"payload", headers={"Host": "stale.default.localhost"})
            assert r.status_code == 200 and r.text == f"/{i}"
            if i % 2:
                await asyncio.sleep(0.01)  # sometimes the close lands first, sometimes not


async def test_stop_drains_in_flight_requests(router_factory, backends) -> None:
    async def slow(req: Req) -> Resp:
        await asyncio.sleep(0.3)
        return Resp(200, [], b"done")

    router = await router_factory()
    app = await backends(slow)
    router.route("drain.default.localhost", app.addr)
    async with router.client() as c:
        pending = asyncio.create_task(c.get("/", headers={"Host": "drain.default.localhost"}))
        await asyncio.sleep(0.1)
        await router.server.stop(drain_timeout=5)
        r = await pending
    assert r.status_code == 200 and r.text == "done"
    assert r.headers.get("connection") == "close"
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", router.server.port)


# --------------------------------------------------------------------------------------------------
# In-process handlers


async def test_local_handler_serves_a_host_in_process(router_factory) -> None:
    router = await router_factory(RouterConfig(max_local_body=1000))
    seen: list[LocalRequest] = []

    async def handler(req: LocalRequest) -> LocalResponse:
        seen.append(req)
        return LocalResponse(202, [("X-Kind", "local")], req.body.upper())

    router.table.set_local_handler("broker-ingress.localhost", handler)
    async with router.client() as c:
        ok = await c.post("/ns/default?x=1", content=b"event", headers={"Host": "broker-ingress.localhost",
                                                                        "Ce-Id": "1"})
        big = await c.post("/", content=b"x" * 5000, headers={"Host": "broker-ingress.localhost"})
    assert (ok.status_code, ok.text, ok.headers["x-kind"]) == (202, "EVENT", "local")
    assert (seen[0].method, seen[0].path, seen[0].query, seen[0].header("ce-id")) == ("POST", "/ns/default",
                                                                                     "x=1", "1")
    assert big.status_code == 413


# --------------------------------------------------------------------------------------------------
# Large upload through a separate uvloop router process: streamed, with bounded memory.


def _rss_peak_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])


@contextlib.asynccontextmanager
async def router_process(*routes: str) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    """``python -m wisp.dataplane --uvloop`` in a subprocess: the loop `wisp serve` runs on."""
    port = free_port()
    args = [sys.executable, "-m", "wisp.dataplane", "--uvloop", "--listen", f"127.0.0.1:{port}"]
    for route in routes:
        args += ["--route", route]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        await asyncio.to_thread(wait_for_port, port)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_uvloop_router_process_streams_and_upgrades(backends) -> None:
    got_first = asyncio.Event()

    async def app(req: Req) -> Resp:
        if req.path == "/stream":
            async def body() -> AsyncIterator[bytes]:
                yield b"first"
                await asyncio.wait_for(got_first.wait(), 5)
                yield b"second"

            return Resp(200, [], body())
        return await echo(req)

    async def echo_ws(conn: ws_server.ServerConnection) -> None:
        async for message in conn:
            await conn.send(message)

    http_app = await backends(app)
    async with ws_server.serve(echo_ws, "127.0.0.1", 0) as ws:
        ws_port = next(iter(ws.sockets)).getsockname()[1]
        async with router_process(f"app.localhost=127.0.0.1:{http_app.port}",
                                  f"127.0.0.1=127.0.0.1:{ws_port}") as (port, _):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                posted = await c.post("/p", content=b"data" * 10_000, headers={"Host": "app.localhost"})
                async with c.stream("GET", "/stream", headers={"Host": "app.localhost"}) as r:
                    parts = []
                    async for piece in r.aiter_raw():
                        parts.append(piece)
                        got_first.set()
            async with ws_client.connect(f"ws://127.0.0.1:{port}/") as conn:
                await conn.send("over uvloop")
                echoed = await asyncio.wait_for(conn.recv(), 5)
    assert posted.content == b"data" * 10_000
    assert http_app.requests[0].headers["x-forwarded-for"] == "127.0.0.1"
    assert b"".join(parts) == b"firstsecond"
    assert echoed == "over uvloop"


async def test_large_chunked_upload_is_streamed_with_bounded_memory(backends) -> None:
    total = 200 * 1024 * 1024
    received = 0
    first_bytes = asyncio.Event()

    async def sink(req: Req) -> Resp:
        nonlocal received
        async for piece in req.stream():
            received += len(piece)
            first_bytes.set()
        return Resp(200, [], str(received).encode())

    app = await backends(sink)
    async with router_process(f"up.default.localhost=127.0.0.1:{app.port}") as (port, proc):
        baseline = _rss_peak_kb(proc.pid)
        block = os.urandom(1 << 16)

        async def gen() -> AsyncIterator[bytes]:
            for i in range(total // len(block)):
                if i == 64:  # 4 MB in: the instance must already be receiving
                    await asyncio.wait_for(first_bytes.wait(), 5)
                yield block

        async with httpx.AsyncClient(timeout=60) as c:
            r = await c.post(f"http://127.0.0.1:{port}/", content=gen(), headers={"Host": "up.default.localhost"})
        assert r.status_code == 200 and int(r.text) == total
        growth_mb = (_rss_peak_kb(proc.pid) - baseline) / 1024
        assert growth_mb < 40, f"router peak RSS grew by {growth_mb:.0f} MB for a 200 MB upload"


# --------------------------------------------------------------------------------------------------
# Connection bursts towards an instance with a small listen backlog


class SlowAcceptor:
    """A blocking HTTP/1.1 app with a listen backlog of 1 that accepts one connection every
    ``accept_every`` seconds, like a single-threaded accept loop doing work between accepts.
    Each accepted connection is served keep-alive on its own thread."""

    def __init__(self, accept_every: float = 0.02) -> None:
        import socket
        import threading

        self._threading = threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.accept_every = accept_every
        self.accepted = 0
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(conn)
            self._threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            time.sleep(self.accept_every)

    def _serve(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        buf = b""
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")
                time.sleep(0.002)  # a little work per request
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()


async def _get_once(port: int, host: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


async def test_burst_waits_for_connections_instead_of_flooding_a_small_backlog(router: Router) -> None:
    app = SlowAcceptor()
    try:
        router.route("burst.default.localhost", app.addr)  # containerConcurrency 0: no gate
        started = time.monotonic()
        answers = await asyncio.gather(
            *(_get_once(router.server.port, "burst.default.localhost") for _ in range(100)))
        took = time.monotonic() - started
    finally:
        await asyncio.to_thread(app.close)
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers)
    # Unbounded dials overflow the 2-slot accept queue and stall in SYN back-off (1 s, 3 s, 7 s...).
    assert took < 3.0, f"100 requests took {took:.1f} s"
    assert app.accepted <= 100
