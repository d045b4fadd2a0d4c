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
from collections import deque
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


class PoolWaiter(Protocol):
    """A request waiting in a ``ConnectionPool`` for a connection (the exchange)."""

    def wants_connection(self) -> bool: ...
    def pool_ready(self, conn: UpstreamConnection) -> None: ...
    def pool_failed(self, exc: BaseException) -> None: ...


class ConnectionPool:
    """Connections to one endpoint: idle keep-alive ones, and the dials that make new ones.

    Idle connections are reused most recently used first: the instance's own idle timeout closes
    the oldest sockets first, so reusing the newest minimises the chance of writing into a
    connection the instance is about to drop.

    A request that finds no idle connection *waits* here, first come first served, and gets
    whichever comes first: a connection another request just finished with, or a new one. At most
    ``max_connecting`` dials are in progress at once. Without that bound a burst of N requests
    opens N connections in the same instant, and an app with a small listen backlog (Python's
    ``http.server`` has 5) drops the SYNs that overflow its accept queue: clients then stall for
    seconds in TCP retransmission back-off. Dials belong to the pool, not to a request, so a dial
    stuck in back-off delays nobody while other connections are serving.
    """

    __slots__ = ("_dials", "_handing", "_loop", "_retry", "_waiters", "address", "closed", "connect_timeout",
                 "dialing", "high_water", "idle", "live", "max_connecting", "max_idle")

    def __init__(self, max_idle: int = 256, *, address: tuple[str, int] = ("127.0.0.1", 0),
                 max_connecting: int = 8) -> None:
        self.idle: list[UpstreamConnection] = []
        self.max_idle = max_idle
        self.closed = False
        self.address = address
        self.max_connecting = max_connecting
        self.connect_timeout = 5.0
        self.high_water = 256 * 1024
        self.dialing = 0  # dials in progress
        self.live = 0  # open connections this pool dialled (busy or idle)
        self._waiters: deque[PoolWaiter] = deque()
        self._handing = 0  # connections scheduled for hand-off to a waiter
        self._dials: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        """Requests queued for a connection (some may have given up and not been pruned yet)."""
        return len(self._waiters)

    def get(self) -> UpstreamConnection | None:
        """An idle, still-open connection, or None when the caller must ``wait`` for one."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
        return None

    def put(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange: to the oldest waiter, else to the idle
        list (closed when the pool is full or closed).

        The hand-off to a waiter runs on the next loop iteration, because ``put`` is called from
        inside the connection's parser callbacks.
        """
        if self._waiters and conn.usable():
            self._handing += 1
            self._loop_of().call_soon(self._hand_off, conn)
            return
        self._keep_idle(conn)

    def _keep_idle(self, conn: UpstreamConnection) -> None:
        if self.closed or len(self.idle) >= self.max_idle or not conn.usable():
            conn.close()
            return
        conn.pool = self
        self.idle.append(conn)

    def wait(self, waiter: PoolWaiter, *, max_connecting: int, connect_timeout: float, high_water: int) -> None:
        """Queue ``waiter`` for a connection; dial a new one when few enough dials are in progress.

        The waiter later gets ``pool_ready(conn)``, or ``pool_failed(exc)`` when a dial failed and
        the pool has no open connection that could serve it instead.
        """
        self.max_connecting = max(1, max_connecting)
        self.connect_timeout = connect_timeout
        self.high_water = high_water
        self._waiters.append(waiter)
        self._maybe_dial()

    def _next_waiter(self) -> PoolWaiter | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.wants_connection():
                return waiter
        return None

    def _hand_off(self, conn: UpstreamConnection) -> None:
        self._handing -= 1
        if not conn.usable():
            self._maybe_dial()  # it died on the way; the waiters still need one
            return
        waiter = self._next_waiter()
        if waiter is None:
            self._keep_idle(conn)
        else:
            waiter.pool_ready(conn)

    def _maybe_dial(self) -> None:
        """Start dials for waiters not covered by a dial or hand-off already under way."""
        needed = len(self._waiters) - self._handing - self.dialing
        while needed > 0 and self.dialing < self.max_connecting:
            self.dialing += 1
            needed -= 1
            task = self._loop_of().create_task(self._dial())
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)

    async def _dial(self) -> None:
        host, port = self.address
        try:
            conn = await open_connection(host, port, self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            self.dialing -= 1
            self._dial_failed(exc)
            return
        except asyncio.CancelledError:
            self.dialing -= 1
            raise
        self.dialing -= 1
        conn.home = self
        self.live += 1
        conn.transport_limits(self.high_water)
        waiter = self._next_waiter()
        if waiter is None:
            self._keep_idle(conn)
        else:
            waiter.pool_ready(conn)
        self._maybe_dial()

    def _dial_failed(self, exc: BaseException) -> None:
        """A dial failed: with no open connection left to serve the queue, the oldest request gets
        the error (it may retry elsewhere); otherwise the queue waits for the open ones and dials
        again shortly (not at once: a refusing instance would make that a busy loop)."""
        if self.live <= 0:
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.pool_failed(exc)
            self._maybe_dial()
        elif self._waiters and self._retry is None:
            self._retry = self._loop_of().call_later(0.05, self._retry_dial)

    def _retry_dial(self) -> None:
        self._retry = None
        self._maybe_dial()

    def lost(self, conn: UpstreamConnection) -> None:
        """A connection this pool dialled has closed."""
        self.live -= 1
        if self._waiters:
            self._maybe_dial()

    def _loop_of(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget a connection that died while idle."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def clear(self) -> None:
        """Close every idle connection (server stopping); the pool stays usable."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
        if not self._waiters:
            for task in list(self._dials):
                task.cancel()

    def close(self) -> None:
        """Close every idle connection and keep no new ones (the endpoint was removed).

        Requests already queued here are still served (a removed endpoint finishes its requests).
        """
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
        "head_cache",
        "home",
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
        self.pool: ConnectionPool | None = None  # set while idle in a pool
        self.home: ConnectionPool | None = None  # the pool that dialled it (counts it as live)
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[Header] = []
        self._status = 0
        self._keep_alive = True
        self._head_only = False
        self._tunnel = False
        self.dead = False
        self.reused = False
        self.reading_paused = False
        # The exchange's last (inputs, headers, built client head), reused for identical responses.
        self.head_cache: tuple[tuple[int, bytes, bool, bool, bool], list[Header], tuple[bytes, int, bool]] | None = None

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
        if self.home is not None:
            self.home.lost(self)
            self.home = None
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
