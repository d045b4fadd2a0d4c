"""The client side of the ingress: an ``asyncio.Protocol`` per accepted connection, fed to httptools.

One ``ClientConnection`` parses requests and keeps them in a FIFO of ``Exchange`` objects: the head
of the queue is the only one that talks to an instance and writes to the client, which keeps
pipelined requests in order. Reading pauses for three independent reasons (a pipelined request is
queued behind the one in flight, too much body is buffered, the instance is not reading fast
enough) and resumes only when none of them holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import httptools

from wisp.dataplane.deadlines import DeadlineWheel
from wisp.dataplane.exchange import NOTED_LENGTHS, PAUSE_BUFFER, PAUSE_PIPELINE, Exchange
from wisp.dataplane.headers import Header, simple_response
from wisp.dataplane.settings import RouterConfig
from wisp.dataplane.table import RoutingTable

log = logging.getLogger("wisp.dataplane")


@dataclass(slots=True)
class ServerMetrics:
    """Counters for traffic that never reaches a revision."""

    connections_total: int = 0
    connections_open: int = 0
    unknown_host: int = 0
    bad_requests: int = 0


@dataclass(slots=True)
class ProxyContext:
    """What every connection of one server shares."""

    table: RoutingTable
    config: RouterConfig
    loop: asyncio.AbstractEventLoop
    connections: set[ClientConnection] = field(default_factory=set)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    draining: bool = False
    wheel: DeadlineWheel = field(init=False)

    def __post_init__(self) -> None:
        self.wheel = DeadlineWheel(self.loop)


class _HeaderTooLarge(Exception):
    pass


class ClientConnection(asyncio.Protocol):
    """One accepted client connection (HTTP/1.1 keep-alive, pipelining, upgrade)."""

    __slots__ = (
        "_corked", "_header_bytes", "_max_header_bytes", "_paused", "client_ip", "closing", "ctx", "head_cache",
        "idle_since", "loop", "parser", "parsing", "queue", "raw", "transport", "write_paused",
    )

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.queue: deque[Exchange] = deque()
        self.parsing: Exchange | None = None
        self.raw: Exchange | None = None
        self.closing = False
        self.write_paused = False
        self.idle_since = self.loop.time()
        self._paused = 0
        self._header_bytes = 0
        self._max_header_bytes = ctx.config.max_header_bytes
        self._corked: list[bytes] | None = None
        # The previous request's upstream head prefix and what it was built from (see Exchange).
        self.head_cache: tuple[bytes, list[Header], bytes, bool, bytes | None, bytes, bool] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=self.ctx.config.high_water)
        peer = self.transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "127.0.0.1"
        self.ctx.connections.add(self)
        self.ctx.metrics.connections_total += 1
        self.ctx.metrics.connections_open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connections.discard(self)
        self.ctx.metrics.connections_open -= 1
        queue, self.queue = self.queue, deque()
        for ex in queue:
            ex.abort()
        self.raw = None

    def eof_received(self) -> bool | None:
        if self.raw is not None:
            self.raw.on_client_eof()
            return True
        if self.queue:
            # Half-close after sending a request: still answer it, then close.
            self.queue[-1].keep_alive = False
            return True
        return None

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.on_client_data(data)
            return
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__cause__ or exc.__context__, _HeaderTooLarge):
                self._reject(431, b"request header fields too large\n")
            else:
                log.exception("proxy callback failed")
                self._reject(500, b"internal proxy error\n")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}\n".encode())

    def pause_writing(self) -> None:
        # The client reads slower than the instance writes: stop reading the instance.
        self.write_paused = True
        if self.queue and (up := self.queue[0].upstream) is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.queue and (up := self.queue[0].upstream) is not None:
            up.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        ex = Exchange(self)
        if self.queue:
            # A pipelined request while another is in flight: parse what was already read, but
            # read no further until the queue drains. Pausing only here (not after every request)
            # keeps the common one-request-at-a-time client free of per-request epoll changes.
            self.pause(PAUSE_PIPELINE)
        self.parsing = ex
        self.queue.append(ex)
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        ex.url = ex.url + url if ex.url else url
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            raise _HeaderTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called once per header by httptools, so the common case is kept to an append and a
        # length check (the exchange only looks at the few headers whose name length matches).
        ex = self.parsing
        assert ex is not None
        ex.headers.append((name, value))
        if len(name) in NOTED_LENGTHS:
            ex.note_header(name.lower(), value)
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._max_header_bytes:
            raise _HeaderTooLarge()

    def on_headers_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        parser = self.parser
        ex.method = parser.get_method()
        keep_alive = ex.keep_alive = parser.should_keep_alive()
        if not keep_alive or ex.connection_header:
            # Only then can it be HTTP/1.0 (which keeps alive solely on `Connection: keep-alive`);
            # formatting the version string is skipped for the common 1.1 request.
            ex.http10 = parser.get_http_version() == "1.0"
        if ex.upgrade_value:
            ex.upgrade = bool(parser.should_upgrade())
        ex.head_complete = True
        if self.queue[0] is ex:
            ex.start()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.on_request_body(body)

    def on_message_complete(self) -> None:
        ex, self.parsing = self.parsing, None
        if ex is None:
            return
        ex.on_request_done()

    # -- used by exchanges -----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        corked = self._corked
        if corked is not None:
            corked.append(data)
        elif not self.closing and self.transport is not None:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until ``uncork``: head and body of a small response leave in one send()."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and not self.closing and self.transport is not None:
            self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def write_eof(self) -> None:
        if not self.closing and self.transport is not None and self.transport.can_write_eof():
            self.transport.write_eof()

    def pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self.transport is not None and not self.closing:
                self.transport.resume_reading()

    def close(self) -> None:
        """Close after flushing what was written (graceful)."""
        if not self.closing:
            self.uncork()
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (truncated response, timeout mid-stream)."""
        self._corked = None
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def exchange_finished(self, ex: Exchange) -> None:
        """The head exchange is complete in both directions; move on to the next request."""
        if self.queue and self.queue[0] is ex:
            self.queue.popleft()
        if not ex.keep_alive or self.ctx.draining:
            self.close()
            return
        if self.queue:
            nxt = self.queue[0]
            if nxt.head_complete:
                nxt.start()
        else:
            self.idle_since = self.loop.time()
        if len(self.queue) <= 1:
            self.resume(PAUSE_PIPELINE)

    def start_tunnel(self, ex: Exchange) -> None:
        """The instance accepted an upgrade: from now on client bytes go straight to it."""
        self.raw = ex
        self.resume(PAUSE_PIPELINE | PAUSE_BUFFER)

    def is_idle(self) -> bool:
        return not self.queue and self.raw is None

    # -- errors ----------------------------------------------------------------------------------
    def _upgraded(self, rest: bytes) -> None:
        """httptools stopped at an upgrade request; everything after it is not HTTP any more."""
        ex = self.queue[-1] if self.queue else None
        if ex is None or not ex.upgrade:
            self._reject(400, b"unsupported upgrade\n")
            return
        self.raw = ex
        if rest:
            ex.on_client_data(rest)

    def _reject(self, status: int, body: bytes) -> None:
        """Answer a request we cannot parse and close: the byte stream is no longer trustworthy."""
        self.ctx.metrics.bad_requests += 1
        queue, self.queue = self.queue, deque()
        midway = any(ex.sent_any and not ex.finished for ex in queue)
        for ex in queue:
            ex.abort()
        if midway:
            self.abort()  # a response is half written; an error page would corrupt it
            return
        if not self.closing and self.transport is not None:
            self.transport.write(simple_response(status, body, keep_alive=False))
        self.close()
