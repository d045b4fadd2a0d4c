"""The delivery HTTP client over real loopback sockets: pooling, framing, the keep-alive race, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from tests.support import free_port
from wisp.eventing.destinations import HttpSender
from wisp.eventing.httpclient import (
    ConnectError,
    HttpClient,
    ProtocolError,
    RemoteClosed,
    RequestTimeout,
    ResponseTooLarge,
    build_request,
)

Request = tuple[bytes, dict[str, str], bytes]  # request line, headers, body
Handler = Callable[[int, int, Request, asyncio.StreamWriter], Awaitable[bool]]
"""(connection number, request number on it, request, writer) -> keep the connection open?"""

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\nX-A: 2\r\n\r\nok"


async def _read_request(reader: asyncio.StreamReader) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    line, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for raw in lines:
        name, _, value = raw.partition(b":")
        headers[name.decode().lower()] = value.strip().decode()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


class Server:
    """A loopback HTTP/1.1 server whose answers are scripted per test; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.active = 0
        self.peak = 0
        self.requests: list[Request] = []
        self.port = free_port()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            for index in range(1_000_000):
                request = await _read_request(reader)
                self.requests.append(request)
                if not await self.handler(number, index, request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.active -= 1
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/path?q=1"


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", server.port)
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


async def answer_ok(_c: int, _i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    return True


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    c = HttpClient(max_connections=4, max_body=1024 * 1024)
    yield c
    await c.aclose()


async def test_keep_alive_reuses_one_connection_and_sends_a_complete_request(client: HttpClient) -> None:
    async with serving(answer_ok) as server:
        for n in range(5):
            resp = await client.post(server.url, [("ce-id", str(n)), ("Content-Length", "999")], b"hello", 2.0)
            assert (resp.status, resp.body) == (200, b"ok")
            assert resp.headers[-2:] == [("x-a", "1"), ("x-a", "2")]  # lower-cased, repeats kept
    assert server.connections == 1
    line, headers, body = server.requests[0]
    assert line == b"POST /path?q=1 HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert (headers["content-length"], headers["ce-id"], body) == ("5", "0", b"hello")


async def test_chunked_response_body_is_joined(client: HttpClient) -> None:
    async def chunked(_c: int, _i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        return True

    async with serving(chunked) as server:
        for _ in range(2):
            resp = await client.post(server.url, [], b"", 2.0)
            assert resp.body == b"hello world"
    assert server.connections == 1


async def test_connection_close_is_honoured_and_close_delimited_bodies_are_read(client: HttpClient) -> None:
    async def closing(_c: int, i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        if i == 0 and _c % 2 == 0:
            writer.write(b"HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc")
        else:  # no length: the body ends when the server closes
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-eof")
        return False

    async with serving(closing) as server:
        first = await client.post(server.url, [], b"x", 2.0)
        second = await client.post(server.url, [], b"x", 2.0)
    assert (first.status, first.body) == (201, b"abc")
    assert (second.status, second.body) == (200, b"until-eof")
    assert server.connections == 2


async def test_idle_connection_closed_by_the_server_is_retried_once_on_a_fresh_one(client: HttpClient) -> None:
    async def idle_timeout(c: int, i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        if c == 0 and i == 1:
            return False  # the keep-alive race: the request arrives as the server drops the socket
        writer.write(OK)
        return True

    async with serving(idle_timeout) as server:
        assert (await client.post(server.url, [], b"1", 2.0)).status == 200
        assert (await client.post(server.url, [], b"2", 2.0)).status == 200
    assert server.connections == 2
    assert [r[2] for r in server.requests] == [b"1", b"2", b"2"]


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(client: HttpClient) -> None:
    async def drop(_c: int, _i: int, _r: Request, _w: asyncio.StreamWriter) -> bool:
        return False

    async with serving(drop) as server:
        with pytest.raises(RemoteClosed):
            await client.post(server.url, [], b"x", 2.0)
    assert len(server.requests) == 1


async def test_a_reused_connection_dying_mid_response_is_not_retried(client: HttpClient) -> None:
    async def partial(_c: int, i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        if i == 0:
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        return False

    async with serving(partial) as server:
        await client.post(server.url, [], b"x", 2.0)
        with pytest.raises(RemoteClosed):
            await client.post(server.url, [], b"x", 2.0)
    assert len(server.requests) == 2


async def test_timeout_fails_the_request_and_the_sender_reports_it_as_a_response() -> None:
    async def silent(_c: int, _i: int, _r: Request, _w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as server:
        client = HttpClient()
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            await client.post(server.url, [], b"x", 0.2)
        assert time.monotonic() - started < 1.0
        await client.aclose()
        sender = HttpSender("wisp.localhost", ("127.0.0.1", 1))
        resp = await sender.send(server.url, {}, b"x", 0.2)
        await sender.aclose()
    assert resp.status is None and "RequestTimeout" in resp.error


async def test_large_bodies_up_to_the_limit_and_no_further(client: HttpClient) -> None:
    big = bytes(range(256)) * 4096  # exactly the 1 MiB limit

    async def large(_c: int, _i: int, request: Request, writer: asyncio.StreamWriter) -> bool:
        body = big + b"!" if request[2] == b"over" else big
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        return True

    async with serving(large) as server:
        assert (await client.post(server.url, [], b"fits", 5.0)).body == big
        with pytest.raises(ResponseTooLarge):
            await client.post(server.url, [], b"over", 5.0)
        assert (await client.post(server.url, [("x", "y")], big, 5.0)).body == big  # large request too
    assert server.requests[-1][2] == big


async def test_concurrent_requests_share_a_bounded_pool(client: HttpClient) -> None:
    async def slow(_c: int, _i: int, request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(request[2]) + request[2])
        return True

    async with serving(slow) as server:
        bodies = [b"%d" % n for n in range(40)]
        resps = await asyncio.gather(*(client.post(server.url, [], b, 5.0) for b in bodies))
        assert [r.body for r in resps] == bodies
        assert server.connections == 4 and server.peak == 4  # max_connections=4, all reused


async def test_interim_100_continue_is_skipped(client: HttpClient) -> None:
    async def interim(_c: int, _i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        return True

    async with serving(interim) as server:
        resp = await client.post(server.url, [], b"x", 2.0)
    assert (resp.status, resp.body) == (200, b"ok")


async def test_connect_errors_and_bad_requests_are_client_errors(client: HttpClient) -> None:
    with pytest.raises(ConnectError):
        await client.post(f"http://127.0.0.1:{free_port()}/", [], b"", 2.0)
    with pytest.raises(ProtocolError):
        build_request("POST", "/", "h", [("x-evil", "a\r\nhost: other")], b"")
    with pytest.raises(ProtocolError):
        await client.post("ftp://127.0.0.1/", [], b"", 2.0)


async def test_sender_sends_hosts_under_the_domain_through_ingress_with_their_host_header() -> None:
    async with serving(answer_ok) as ingress:
        sender = HttpSender("wisp.localhost", ("127.0.0.1", ingress.port))
        for _ in range(2):
            resp = await sender.send("http://hello.default.wisp.localhost/p", {"ce-id": "1"}, b"{}", 2.0)
            assert resp.status == 200 and resp.header("x-a") == "1"
        await sender.aclose()
    assert ingress.connections == 1
    line, headers, _ = ingress.requests[0]
    assert (line, headers["host"]) == (b"POST /p HTTP/1.1", "hello.default.wisp.localhost")


async def test_a_pooled_connection_the_server_closed_while_idle_is_skipped(client: HttpClient) -> None:
    async def one_shot(_c: int, _i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)  # keep-alive by the headers, closed anyway (an idle timeout)
        return False

    async with serving(one_shot) as server:
        for _ in range(3):
            assert (await client.post(server.url, [], b"x", 2.0)).status == 200
            await asyncio.sleep(0.05)  # let the close arrive while the connection is idle
    assert server.connections == 3 and len(server.requests) == 3


async def test_an_unsolicited_second_response_drops_the_connection_not_the_answer(client: HttpClient) -> None:
    async def doubled(_c: int, _i: int, _r: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK + b"HTTP/1.1 500 Oops\r\nx-stray: 1\r\ncontent-length: 0\r\n\r\n")
        return True

    async with serving(doubled) as server:
        first = await client.post(server.url, [], b"x", 2.0)
        second = await client.post(server.url, [], b"x", 2.0)
    assert (first.status, first.body) == (200, b"ok") and ("x-stray", "1") not in first.headers
    assert second.status == 200 and server.connections == 2
