"""A small HTTP/1.1 client for event deliveries: raw asyncio protocol, httptools, keep-alive pool.

Why not httpx: the dispatcher sends thousands of tiny POSTs a second to loopback subscribers,
and a general client's per-request machinery (request/response objects, header models, the
transport stack, a task per timeout) cost more CPU than the delivery itself. This client does
the minimum a delivery needs:

* the request head and body leave in one ``write``; the response (status, headers, body) is read
  whole, bounded by ``max_body``, and parsed by ``httptools.HttpResponseParser`` (chunked,
  Content-Length and close-delimited bodies alike);
* one keep-alive pool per ``(host, port)``, at most ``max_connections`` open per endpoint, idle
  ones reused most-recent-first (the peer's idle timeout closes the oldest first);
* one deadline per request covering the pool wait, connect, write and the whole response;
* the keep-alive race: a *reused* idle connection that turns out closed before any response byte
  arrived is retried exactly once on a fresh connection. Nothing else is retried — the caller
  owns retry policy.

Plain ``http`` only; no TLS, proxies, redirects or cookies. Errors are ``HttpClientError``
subclasses so a caller can turn every transport failure into one value.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "DEFAULT_MAX_BODY",
    "ConnectError",
    "HttpClient",
    "HttpClientError",
    "HttpResponse",
    "ProtocolError",
    "RemoteClosed",
    "RequestTimeout",
    "ResponseTooLarge",
    "authority",
    "build_request",
    "split_url",
]

DEFAULT_MAX_BODY = 4 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 512
_DROPPED = frozenset({"host", "content-length", "transfer-encoding"})


class HttpClientError(Exception):
    """A request got no (complete, acceptable) response."""


class ConnectError(HttpClientError):
    """The TCP connection could not be opened."""


class RequestTimeout(HttpClientError):
    """The deadline passed before the whole response arrived."""


class RemoteClosed(HttpClientError):
    """The peer closed the connection before the response was complete."""


class ProtocolError(HttpClientError):
    """The peer answered something that is not HTTP/1.1, or the request could not be encoded."""


class ResponseTooLarge(HttpClientError):
    """The response body exceeded ``max_body``; the connection is dropped rather than drained."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response; header names are lower-cased, values decoded as latin-1."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def split_url(url: str) -> tuple[str, int, str]:
    """``(host, port, request-target)`` of an ``http://`` URL; ProtocolError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProtocolError(f"not a plain http URL: {url!r}")
    try:
        port = parts.port or 80
    except ValueError as e:
        raise ProtocolError(f"bad port in {url!r}") from e
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return parts.hostname, port, target


def authority(host: str, port: int) -> str:
    """The Host header for a dialled address (IPv6 literals bracketed, port 80 implied)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == 80 else f"{name}:{port}"


def build_request(method: str, target: str, host: str, headers: Iterable[tuple[str, str]],
                  body: bytes) -> bytes:
    """The request bytes: head (with Host and Content-Length set here) followed by the body.

    Caller-supplied Host, Content-Length and Transfer-Encoding are ignored (``host`` wins). A CR or
    LF inside a name or value would split the head into attacker-chosen lines, so it is refused;
    the check counts line breaks in the joined head instead of scanning every value separately.
    """
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    lines.extend(f"{k}: {v}" for k, v in headers if k.lower() not in _DROPPED)
    lines.append(f"content-length: {len(body)}")
    head = "\r\n".join(lines)
    breaks = len(lines) - 1
    if head.count("\n") != breaks or head.count("\r") != breaks:
        raise ProtocolError("CR or LF in a request header")
    try:
        raw = head.encode("latin-1")
    except UnicodeEncodeError:
        raw = head.encode("utf-8")
    return raw + b"\r\n\r\n" + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time.

    The response is collected by httptools callbacks into a future; the connection reports
    whether any byte of the current response arrived so the pool can tell the keep-alive race
    (closed while idle, nothing received) from a failure mid-response.
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._framed = False  # Content-Length or chunked: EOF before the end is an error
        self._headers_done = False
        self.received = False
        self.closed = False
        self.reusable = False
        self.uses = 0

    # -- driving --------------------------------------------------------------------------
    def send(self, request: bytes, waiter: asyncio.Future[HttpResponse]) -> None:
        """Write a request; ``waiter`` gets the response or an ``HttpClientError``."""
        assert self._transport is not None
        self._waiter = waiter
        self._headers = []
        self._body = []
        self._size = 0
        self._framed = self._headers_done = self.received = self.reusable = False
        self.uses += 1
        self._transport.write(request)

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    @property
    def usable(self) -> bool:
        return not self.closed and self._transport is not None and not self._transport.is_closing()

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: the connection is out of step
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ProtocolError(f"bad response: {e}"))

    def eof_received(self) -> bool | None:
        if self._headers_done and not self._framed and self._waiter is not None and not self._waiter.done():
            self._finish(keep_alive=False)  # a close-delimited body ends here
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        detail = f": {exc}" if exc else ""
        self._fail(RemoteClosed(f"connection closed before the response was complete{detail}"))

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiter is not None and self._waiter.done():
            self.abort()  # a second response to one request: the peer is out of step

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key == "content-length" or (key == "transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(ResponseTooLarge(f"response body over {self._max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._body, self._size = [], [], 0
            self._framed = self._headers_done = False
            return
        self._finish(self._parser.should_keep_alive())

    # -- outcome ----------------------------------------------------------------------------
    def _finish(self, keep_alive: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self.reusable = keep_alive and not self.closed
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        headers, self._headers, self._body = self._headers, [], []  # stray bytes must not touch these
        waiter.set_result(HttpResponse(self._parser.get_status_code(), headers, body))

    def _fail(self, exc: HttpClientError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()


class _Endpoint:
    """The connections to one ``(host, port)``: idle LIFO, a count of open ones, FIFO waiters."""

    __slots__ = ("idle", "limit", "open", "waiters")

    def __init__(self, limit: int) -> None:
        self.idle: list[_Connection] = []
        self.limit = limit
        self.open = 0
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    def take_idle(self) -> _Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if conn.usable:
                return conn
            self.open -= 1
        return None

    def release(self, conn: _Connection) -> None:
        """Give a finished connection to the next waiter, park it, or forget it if it is done."""
        if conn.reusable and conn.usable:
            while self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            self.idle.append(conn)
            return
        if not conn.closed:
            conn.abort()
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        """A slot is free: the first live waiter may dial (``None`` means "open your own")."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.open += 1
                waiter.set_result(None)
                return


class HttpClient:
    """Keep-alive HTTP/1.1 client for plain ``http`` URLs (see the module docstring)."""

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        self._max_connections = max_connections
        self._max_body = max_body
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._closed = False

    async def post(self, url: str, headers: Iterable[tuple[str, str]], body: bytes, timeout: float, *,
                   host_header: str | None = None) -> HttpResponse:
        """POST ``body`` to ``url``; ``host_header`` overrides the Host sent (the URL's authority)."""
        host, port, target = split_url(url)
        if host_header is None:
            host_header = authority(host, port)
        return await self.request(host, port, build_request("POST", target, host_header, headers, body), timeout)

    async def request(self, host: str, port: int, raw: bytes, timeout: float) -> HttpResponse:
        """Send pre-built request bytes (see ``build_request``) and read the whole response."""
        if self._closed:
            raise HttpClientError("client is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        endpoint = self._endpoint(host, port)
        conn = endpoint.take_idle() or await self._fresh(loop, endpoint, host, port, deadline)
        try:
            return await self._exchange(loop, endpoint, conn, raw, deadline)
        except RemoteClosed:
            if conn.received or conn.uses < 2:
                raise
        # The keep-alive race: the peer closed this reused socket as we wrote. Once more, skipping
        # the other idle sockets (they are as old); only a connection that has just finished an
        # exchange (handed over when the endpoint is at its bound) may serve instead of a new one.
        conn = await self._fresh(loop, endpoint, host, port, deadline)
        return await self._exchange(loop, endpoint, conn, raw, deadline)

    async def aclose(self) -> None:
        """Close idle connections; requests in flight finish and their connections are dropped."""
        self._closed = True
        for endpoint in self._endpoints.values():
            for conn in endpoint.idle:
                conn.close()
            endpoint.idle.clear()
            for waiter in endpoint.waiters:
                if not waiter.done():
                    waiter.set_exception(HttpClientError("client is closed"))
            endpoint.waiters.clear()

    # -- internals ---------------------------------------------------------------------------
    def _endpoint(self, host: str, port: int) -> _Endpoint:
        endpoint = self._endpoints.get((host, port))
        if endpoint is None:
            endpoint = self._endpoints[(host, port)] = _Endpoint(self._max_connections)
        return endpoint

    async def _exchange(self, loop: asyncio.AbstractEventLoop, endpoint: _Endpoint, conn: _Connection,
                        raw: bytes, deadline: float) -> HttpResponse:
        waiter: asyncio.Future[HttpResponse] = loop.create_future()
        timer = loop.call_at(deadline, _expire, waiter)
        conn.send(raw, waiter)
        try:
            return await waiter
        except BaseException:
            conn.abort()  # timed out, cancelled or broken mid-response: the stream is out of step
            raise
        finally:
            timer.cancel()
            if self._closed:
                conn.reusable = False
            endpoint.release(conn)

    async def _fresh(self, loop: asyncio.AbstractEventLoop, endpoint: _Endpoint, host: str, port: int,
                     deadline: float) -> _Connection:
        """A new connection, waiting for a free slot when the endpoint is at its bound."""
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    if endpoint.open < endpoint.limit:
                        endpoint.open += 1
                        break
                    waiter: asyncio.Future[_Connection | None] = loop.create_future()
                    endpoint.waiters.append(waiter)
                    try:
                        handed = await waiter
                    except BaseException:
                        _give_back(endpoint, waiter)
                        raise
                    if handed is not None and handed.usable:
                        return handed
                    if handed is None:
                        break  # the releaser reserved a slot for us
                    endpoint.open -= 1  # handed a connection that died meanwhile
                return await self._dial(loop, endpoint, host, port)
        except TimeoutError:
            raise RequestTimeout(f"no connection to {host}:{port} before the deadline") from None

    async def _dial(self, loop: asyncio.AbstractEventLoop, endpoint: _Endpoint, host: str,
                    port: int) -> _Connection:
        """Open a connection in a slot already counted in ``endpoint.open``."""
        max_body = self._max_body
        try:
            _, conn = await loop.create_connection(lambda: _Connection(max_body), host, port)
        except BaseException as e:
            endpoint.open -= 1
            endpoint._wake_one()
            if isinstance(e, OSError):
                raise ConnectError(f"cannot connect to {host}:{port}: {e}") from e
            raise
        return conn


def _expire(waiter: asyncio.Future[HttpResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(RequestTimeout("no complete response before the deadline"))


def _give_back(endpoint: _Endpoint, waiter: asyncio.Future[_Connection | None]) -> None:
    """A waiter gave up (timeout, cancel); whatever it was handed goes to the next one."""
    if not waiter.done():
        waiter.cancel()
        return
    if waiter.cancelled() or waiter.exception() is not None:
        return
    handed = waiter.result()
    if handed is None:
        endpoint.open -= 1
        endpoint._wake_one()
    else:
        endpoint.release(handed)
