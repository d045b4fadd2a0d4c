"""Keep-alive connections to instances: a raw protocol over httptools and a per-endpoint pool.

One ``UpstreamConnection`` carries one request at a time. It parses the response with
``httptools.HttpResponseParser`` and hands events to whichever exchange is bound to it (the
``UpstreamListener`` protocol), so no per-request client object is ever created. Between requests the
connection sits in its endpoint's ``ConnectionPool``; if the instance closes it there, the
connection removes itself so the next request never picks a dead socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol, cast

import httptools

from wisp.dataplane.headers import Header


class UpstreamListener(Protocol):
    """What an upstream connection reports to the exchange bound to it."""

    def on_upstream_head(
        self, status: int, reason: bytes, headers: list[Header], keep_alive: bool,
    ) -> None: ...
    def on_upstream_body(self, data: bytes) -> None: ...
    def on_upstream_done(self) -> None: ...
    def on_upstream_upgrade(self, rest: bytes) -> None: ...
    def on_upstream_lost(self, exc: Exception | None) -> None: ...
    def on_upstream_data(self, data: bytes) -> None: ...
    def on_upstream_eof(self) -> None: ...
    def pause_client_reading(self) -> None: ...
    def resume_client_reading(self) -> None: ...


class Sink(Protocol):
    """Where the response goes: writes made while corked leave in one send()."""

    def cork(self) -> None: ...
    def uncork(self) -> None: ...


class ConnectionPool:
    """Idle keep-alive connections to one endpoint, most recently used first.

    LIFO because the instance's own idle timeout closes the oldest sockets first; reusing the
    newest minimises the chance of writing into a connection the instance is about to drop.
    """

    __slots__ = ("closed", "idle", "max_idle")

    def __init__(self, max_idle: int = 256) -> None:
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.closed = False

    def get(self) -> UpstreamConnection | None:
        """An idle, still-open connection, or None when a new one must be dialled."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange; close it when the pool is full or closed."""
        if self.closed or len(self.idle) >= self.max_idle or not conn.usable():
            conn.close()
            return
        conn.pool = self
        self.idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget a connection that died while idle."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def clear(self) -> None:
        """Close every idle connection (server stopping); the pool stays usable."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        """Close every idle connection and refuse future ones (the endpoint was removed)."""
        self.closed = True
        self.clear()


class UpstreamConnection(asyncio.Protocol):
    """A client-side HTTP/1.1 connection to one instance, driven by the bound exchange."""

    __slots__ = (
        "_head_only",
        "_headers",
        "_keep_alive",
        "_parser",
        "_status",
        "_tunnel",
        "dead",
        "listener",
        "pool",
        "reading_paused",
        "reused",
        "sink",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.listener: UpstreamListener | None = None
        self.sink: Sink | None = None
        self.pool: ConnectionPool | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[Header] = []
        self._status = 0
        self._keep_alive = True
        self._head_only = False
        self._tunnel = False
        self.dead = False
        self.reused = False
        self.reading_paused = False

    # -- lifecycle -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def usable(self) -> bool:
        """True when the socket is open and no exchange is bound (safe to reuse)."""
        return not self.dead and self.transport is not None and not self.transport.is_closing()

    def bind(self, listener: UpstreamListener, sink: Sink, *, head_only: bool) -> None:
        """Attach the exchange that will write the next request on this connection."""
        self.listener = listener
        self.sink = sink
        self.pool = None
        self._head_only = head_only
        self._keep_alive = True

    def unbind(self) -> None:
        """Detach after the response completed; the connection may now go back to a pool."""
        self.listener = None
        self.reused = True
        if self.reading_paused:
            self.resume_reading()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def write_eof(self) -> None:
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    def transport_limits(self, high_water: int) -> None:
        """Bound the write buffer so a slow instance pauses the client instead of growing memory."""
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high=high_water)

    def close(self) -> None:
        """Close without reporting to any listener (the caller already knows)."""
        self.dead = True
        self.listener = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the socket immediately; used when a response is cut short."""
        self.dead = True
        self.listener = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.on_upstream_lost(exc)
        elif self.pool is not None:
            self.pool.discard(self)

    def eof_received(self) -> bool | None:
        if self._tunnel and self.listener is not None:
            self.listener.on_upstream_eof()
            return True  # keep sending the client's bytes on a half-closed tunnel
        # An instance half-closing a keep-alive socket: close our side too (returns None).
        return None

    # -- flow control: the client cannot keep up with our writes, or we with the client's --------
    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.pause_client_reading()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.resume_client_reading()

    # -- data ------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._tunnel:
            if self.listener is not None:
                self.listener.on_upstream_data(data)
            return
        if self.listener is None:
            # Bytes on an idle connection violate HTTP/1.1 framing; never reuse it.
            self.close()
            if self.pool is not None:
                self.pool.discard(self)
            return
        sink = self.sink
        assert sink is not None  # bound together with the listener
        sink.cork()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._start_tunnel(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            bound = self.listener
            self.abort()
            if bound is not None:
                bound.on_upstream_lost(exc)
        finally:
            sink.uncork()

    def _start_tunnel(self, rest: bytes) -> None:
        self._tunnel = True
        if self.listener is not None:
            self.listener.on_upstream_upgrade(rest)

    # -- httptools callbacks ---------------------------------------------------------------------
    # (No on_status: like Go's ReverseProxy, the client gets the standard reason phrase. Every
    # callback httptools does not find is one Python call less per response.)
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._status = status
        self._keep_alive = self._parser.should_keep_alive()
        listener = self.listener
        headers, self._headers = self._headers, []
        if listener is not None:
            listener.on_upstream_head(status, b"", headers, self._keep_alive)
        if self._head_only and status >= 200 and listener is self.listener:
            # httptools cannot be told a response answers HEAD (it would wait for the body that
            # Content-Length announces); finish here and start a fresh parser for the next one.
            self._parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.listener is not None:
            self.listener.on_upstream_body(body)

    def on_message_complete(self) -> None:
        if self._status < 200 or self._status == 101:
            return  # an interim response; the final one follows on the same parser
        self._finish()

    def _finish(self) -> None:
        listener = self.listener
        if not self._keep_alive:
            self.dead = True
        if listener is not None:
            listener.on_upstream_done()

    @property
    def keep_alive(self) -> bool:
        """Whether the instance allows another request on this connection."""
        return self._keep_alive and not self.dead


async def open_connection(host: str, port: int, timeout: float) -> UpstreamConnection:
    """Dial a fresh connection to an instance (TCP_NODELAY is the asyncio default)."""
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(UpstreamConnection, host, port), timeout)
    return proto
