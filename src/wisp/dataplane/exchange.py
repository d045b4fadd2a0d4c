"""One request/response exchange through the proxy: routing, forwarding, retry, timeout.

An ``Exchange`` is created per request by the client connection. It is event driven: the client
side pushes request events (head, body pieces, end) and the bound ``UpstreamConnection`` pushes
response events. The fast path — a ready endpoint and a warm pooled connection — runs entirely in
callbacks, without creating a task; only waiting (for an endpoint, for a dial, for a local
handler) goes through a coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import httptools

from wisp.dataplane.errors import DataplaneError
from wisp.dataplane.headers import (
    CONTINUE,
    FRAME_CHUNKED,
    FRAME_CLOSE,
    LAST_CHUNK,
    Header,
    build_interim_head,
    build_response_head,
    chunk,
    finish_upstream_head,
    header_value,
    host_key,
    simple_response,
    upstream_head_prefix,
)
from wisp.dataplane.local import LocalRequest, LocalResponse
from wisp.dataplane.upstream import UpstreamConnection

if TYPE_CHECKING:
    from wisp.dataplane.proxy import ClientConnection
    from wisp.dataplane.table import Endpoint, LocalHandler, RevisionTarget

log = logging.getLogger("wisp.dataplane")

PAUSE_PIPELINE, PAUSE_BUFFER, PAUSE_UPSTREAM = 1, 2, 4
# Name lengths of the request headers the proxy acts on (a cheap pre-filter before lower-casing).
NOTED_LENGTHS = frozenset(len(n) for n in (
    b"host", b"transfer-encoding", b"content-length", b"expect", b"knative-serving-tag", b"upgrade",
    b"connection", b"proxy-connection"))
_MAX_ATTEMPTS = 4  # stale pooled connections are retried freely up to this many dials in total
_START, _IDLE = "response-start", "idle"  # wheel keys (exchange, which) for the optional timers


class Exchange:
    """The state of one request while it crosses the proxy."""

    # Class-level defaults: a new exchange only writes the few fields that differ, which keeps
    # construction (once per request) cheap. Mutable state is created in __init__.
    url = b""
    method = b"GET"
    host = b""
    tag: str | None = None
    expect = chunked = http10 = upgrade = connection_header = False
    content_length = -1
    upgrade_value = b""
    keep_alive = True
    head_complete = request_done = response_done = finished = False
    started = sent_any = discard = tunnel = eof_ends = False
    discarded = status = mode = attempts = fresh_failures = 0
    head = b""
    target: RevisionTarget | None = None
    endpoint: Endpoint | None = None
    upstream: UpstreamConnection | None = None
    _pending_bytes = _replay_bytes = _local_size = 0
    _deadline = _start_tick = _idle_tick = -1
    _last_write = 0.0
    _cold_ms = -1
    _eofs = 0  # tunnel half-closes seen: 1 instance, 2 client
    _task: asyncio.Task[None] | None = None
    _waiting = False  # queued in an endpoint's pool for a connection
    _local: LocalHandler | None = None
    _local_body: list[bytes] | None = None

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.headers: list[Header] = []
        self._pending: list[bytes] = []
        self._replay: list[bytes] | None = []

    # -- request side: called by the client connection ------------------------------------------
    def add_header(self, name: bytes, value: bytes) -> None:
        """Record one request header, noting the few the proxy acts on."""
        self.headers.append((name, value))
        if len(name) in NOTED_LENGTHS:
            self.note_header(name.lower(), value)

    def note_header(self, lname: bytes, value: bytes) -> None:
        """Take note of a request header the proxy acts on (``lname`` is lower-case)."""
        if lname == b"host":
            self.host = value
        elif lname == b"transfer-encoding":
            self.chunked = True
        elif lname == b"content-length":
            self.content_length = int(value) if value.strip().isdigit() else -1
        elif lname == b"expect":
            self.expect = value.strip().lower() == b"100-continue"
        elif lname == b"knative-serving-tag":
            self.tag = value.decode("latin-1").strip()
        elif lname == b"upgrade":
            self.upgrade_value = value
        elif lname == b"connection" or lname == b"proxy-connection":
            self.connection_header = True

    def start(self) -> None:
        """Route the request and begin forwarding it (the exchange is now at the head of the queue)."""
        ctx = self.conn.ctx
        if not self.host:
            self.respond_error(400, b"missing Host header\n")
            return
        if self.method == b"CONNECT":
            self.keep_alive = False
            self.respond_error(405, b"CONNECT is not supported\n")
            return
        host = host_key(self.host)
        handler = ctx.table.local_handler(host)
        if handler is not None:
            self._start_local(handler)
            return
        route = ctx.table.route(host)
        if route is None:
            ctx.metrics.unknown_host += 1
            self.respond_error(404, f"no service routes host {host!r}\n".encode())
            return
        key = route.pick(self.tag if ctx.config.tag_header_routing else None)
        if key is None:
            self.respond_error(503, f"host {host!r} has no traffic targets\n".encode())
            return
        self._forward(ctx.table.revision(key))

    def _forward(self, target: RevisionTarget) -> None:
        self.target = target
        target.begin()
        self._deadline = self.conn.ctx.wheel.add(target.timeout_seconds, self, self._on_timeout)
        if target.response_start_timeout > 0 or target.idle_timeout > 0:
            self._arm_timers(target)
        self.head = self._upstream_head()
        ep = target.try_acquire()
        if ep is None:
            self._task = self.conn.loop.create_task(self._acquire(target))
        else:
            self._use(ep)

    def _upstream_head(self) -> bytes:
        """The head for the instance; its deterministic part is reused from the connection's
        previous request when that one had the same request line and headers (keep-alive clients
        mostly repeat themselves), so only the trace id is generated afresh."""
        conn = self.conn
        upgrade = self.upgrade_value if self.upgrade else None
        cached = conn.head_cache
        if (cached is not None and cached[0] == self.url and cached[1] == self.headers
                and cached[2] == self.method and cached[3] == self.chunked and cached[4] == upgrade):
            return finish_upstream_head(cached[5], cached[6])
        prefix, needs_trace = upstream_head_prefix(
            self.method, self.url, self.headers, conn.client_ip, chunked=self.chunked, upgrade=upgrade,
        )
        conn.head_cache = (self.url, self.headers, self.method, self.chunked, upgrade, prefix, needs_trace)
        return finish_upstream_head(prefix, needs_trace)

    async def _acquire(self, target: RevisionTarget) -> None:
        loop = self.conn.loop
        cold_since = -1.0 if target.endpoints else loop.time()
        try:
            ep = await target.acquire(target.timeout_seconds)
        except DataplaneError as exc:
            self._task = None
            self._fail(exc.status, exc.message)
            return
        self._task = None
        if cold_since >= 0:
            waited = loop.time() - cold_since
            target.record_cold_start(waited)
            self._cold_ms = round(waited * 1000.0)
        if self.finished or self.response_done:
            target.release(ep)
            return
        self._use(ep)

    def _use(self, ep: Endpoint, *, fresh: bool = False) -> None:
        """Send the request to ``ep`` on an idle connection, or queue for one in its pool.

        ``fresh`` (a retry after a failed connection) skips the idle list, which may hold more
        connections the instance has closed, and takes a just-released or newly dialled one.
        """
        self.endpoint = ep
        pool = ep.pool
        if not fresh:
            conn = pool.get()
            if conn is not None:
                self._attach(conn)
                return
        config = self.conn.ctx.config
        self._waiting = True
        pool.wait(self, max_connecting=config.max_connecting_per_endpoint,
                  connect_timeout=config.connect_timeout, high_water=config.high_water)

    # -- PoolWaiter: the endpoint's pool answers a queued request ---------------------------------
    def wants_connection(self) -> bool:
        return self._waiting and not (self.finished or self.response_done)

    def pool_ready(self, conn: UpstreamConnection) -> None:
        self._waiting = False
        self._attach(conn)

    def pool_failed(self, exc: BaseException) -> None:
        self._waiting = False
        self._upstream_failed(exc, stale=False)

    def _attach(self, up: UpstreamConnection) -> None:
        """Bind a connection and send the head plus any body that arrived meanwhile."""
        self.upstream = up
        up.bind(self, self.conn, head_only=self.method == b"HEAD")
        if self.conn.write_paused:
            up.pause_reading()
        pending = self._pending
        if pending:
            for piece in pending:
                self._remember(piece)
            up.write(b"".join([self.head, *pending]))
            self._pending = []
            self._pending_bytes = 0
            self.conn.resume(PAUSE_BUFFER)
        else:
            up.write(self.head)

    def on_request_body(self, body: bytes) -> None:
        """A piece of the request body from the client (already de-chunked by the parser)."""
        if self.discard:
            self._discarding(len(body))
            return
        if self._local_body is not None:
            self._local_piece(body)
            return
        self._send_body(chunk(body) if self.chunked else body)

    def _send_body(self, data: bytes) -> None:
        up = self.upstream
        if up is not None:
            up.write(data)
            if self._replay is not None:
                self._remember(data)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.conn.ctx.config.max_pending_body:
            self.conn.pause(PAUSE_BUFFER)

    def _remember(self, data: bytes) -> None:
        """Keep sent body bytes while they are few, so a stale connection can be replayed."""
        replay = self._replay
        if replay is None:
            return
        self._replay_bytes += len(data)
        if self._replay_bytes > self.conn.ctx.config.replay_limit:
            self._replay = None
        else:
            replay.append(data)

    def on_request_done(self) -> None:
        """The client finished sending this request."""
        self.request_done = True
        if self.discard:
            self._maybe_finish()
        elif self._local_body is not None:
            self._task = self.conn.loop.create_task(self._run_local())
        elif self.chunked and not self.upgrade:
            self._send_body(LAST_CHUNK)

    def _discarding(self, size: int) -> None:
        self.discarded += size
        if self.discarded > self.conn.ctx.config.max_discard:
            self.keep_alive = False
            self.conn.close()

    # -- response side: called by the upstream connection ---------------------------------------
    def on_upstream_head(self, status: int, reason: bytes, headers: list[Header], keep_alive: bool) -> None:
        if self.finished or self.response_done:
            return
        conn = self.conn
        if status == 101 and self.upgrade:
            self._begin_tunnel(reason, headers)
            return
        if status < 200:
            if not self.http10:
                conn.write(build_interim_head(status, reason, headers))
            self.sent_any = True
            self._replay = None
            return
        self.status = status
        self.started = self.sent_any = True
        self._replay = None
        if self.upgrade:
            self.keep_alive = False  # the client already sent non-HTTP bytes or waits for them
        has_body = not (self.method == b"HEAD" or status in (204, 304))
        keep_alive = self.keep_alive and not conn.ctx.draining
        head, self.mode, self.eof_ends = self._response_head(status, reason, headers, has_body, keep_alive)
        if self.mode == FRAME_CLOSE:
            self.keep_alive = False
        if self._cold_ms >= 0:
            head = b"%sWisp-Cold-Start: %dms\r\n\r\n" % (head[:-2], self._cold_ms)
        if self._idle_tick >= 0:
            self._last_write = conn.loop.time()
        conn.write(head)

    def _response_head(
        self, status: int, reason: bytes, headers: list[Header], has_body: bool, keep_alive: bool,
    ) -> tuple[bytes, int, bool]:
        """``build_response_head``, reusing the previous result on this instance connection when
        status, headers and framing inputs are the same (static responses repeat exactly, apart
        from a ``Date`` that changes once a second)."""
        up = self.upstream
        flags = (status, reason, has_body, keep_alive, self.http10)
        if up is not None:
            cached = up.head_cache
            if cached is not None and cached[0] == flags and cached[1] == headers:
                return cached[2]
        result = build_response_head(status, reason, headers, has_body=has_body, keep_alive=keep_alive,
                                     http10=self.http10)
        if up is not None:
            up.head_cache = (flags, headers, result)
        return result

    def on_upstream_body(self, data: bytes) -> None:
        if self.finished or self.response_done:
            return
        if self._idle_tick >= 0:
            self._last_write = self.conn.loop.time()
        self.conn.write(chunk(data) if self.mode == FRAME_CHUNKED else data)

    def on_upstream_done(self) -> None:
        """The instance finished its response; return the connection and complete."""
        if self.finished or self.response_done:
            return
        if self.mode == FRAME_CHUNKED:
            self.conn.write(LAST_CHUNK)
        up, self.upstream = self.upstream, None
        if up is not None:
            if self.request_done and up.keep_alive and self.endpoint is not None:
                up.unbind()
                self.endpoint.pool.put(up)
            else:
                up.close()
        self._complete()

    def on_upstream_lost(self, exc: Exception | None) -> None:
        """The instance connection closed while bound to this exchange."""
        up, self.upstream = self.upstream, None
        if self.finished or self.response_done:
            return
        if self.tunnel:
            self._complete()
            self.conn.close()
            return
        if self.started:
            self._lost_mid_response(exc)
            return
        reused = up is not None and up.reused
        self._upstream_failed(exc, stale=reused)

    def _lost_mid_response(self, exc: Exception | None) -> None:
        if exc is None and self.eof_ends:
            # A read-until-close body ends with the connection: that is a normal end.
            if self.mode == FRAME_CHUNKED:
                self.conn.write(LAST_CHUNK)
            self._complete()
            return
        self.keep_alive = False
        self._complete()
        self.conn.abort()  # the client must see a truncated response, not a complete one

    def on_upstream_upgrade(self, rest: bytes) -> None:
        if rest:
            self.conn.write(rest)

    def on_upstream_data(self, data: bytes) -> None:
        self.conn.write(data)

    def on_upstream_eof(self) -> None:
        """The instance half-closed a tunnel: pass it on, and end the tunnel once both sides did."""
        self._eofs |= 1
        self.conn.write_eof()
        self._tunnel_maybe_done()

    def on_client_data(self, data: bytes) -> None:
        """Raw bytes from the client after an upgrade request (tunnel or not yet answered)."""
        if self.tunnel and self.upstream is not None:
            self.upstream.write(data)
        elif not self.response_done:
            self._pending.append(data)
            self.conn.pause(PAUSE_BUFFER)

    def on_client_eof(self) -> None:
        self._eofs |= 2
        if self.tunnel and self.upstream is not None:
            self.upstream.write_eof()
        self._tunnel_maybe_done()

    def _tunnel_maybe_done(self) -> None:
        # Both directions ended: asyncio keeps half-closed transports open, so close them here.
        if self._eofs == 3:
            up, self.upstream = self.upstream, None
            if up is not None:
                up.close()
            self._complete()
            self.conn.close()

    def pause_client_reading(self) -> None:
        self.conn.pause(PAUSE_UPSTREAM)

    def resume_client_reading(self) -> None:
        self.conn.resume(PAUSE_UPSTREAM)

    def _begin_tunnel(self, reason: bytes, headers: list[Header]) -> None:
        """Switch to a bidirectional byte splice after the instance accepted the upgrade."""
        self.status = 101
        self.started = self.sent_any = self.tunnel = True
        self.keep_alive = False
        self._cancel_deadline()  # a WebSocket lives as long as it likes, like a hijacked conn
        self.conn.write(build_interim_head(101, reason, headers, upgrade=self.upgrade_value))
        pending, self._pending = self._pending, []
        if pending and self.upstream is not None:
            self.upstream.write(b"".join(pending))
        self.conn.start_tunnel(self)

    # -- failure, retry, timeout -----------------------------------------------------------------
    def _upstream_failed(self, exc: BaseException | None, *, stale: bool) -> None:
        """Connecting or sending failed before the client saw anything: retry or answer 502.

        A failure on a reused pooled connection (``stale``: the instance closed it while idle)
        is retried on a fresh connection without counting; a refused or reset fresh connection is
        retried once on another endpoint. Either way only while the body can still be replayed.
        """
        failed = self.endpoint
        self.endpoint = None
        target = self.target
        if self.finished or self.response_done or target is None:
            if failed is not None and target is not None:
                target.release(failed)
            return
        self.attempts += 1
        if not stale:
            self.fresh_failures += 1
        can_retry = (
            not self.sent_any and self._replay is not None
            and self.attempts < _MAX_ATTEMPTS and self.fresh_failures <= 1
        )
        ep = target.try_acquire(exclude=failed) if can_retry else None
        if ep is None and can_retry and stale and failed is not None and not failed.pool.closed:
            ep, failed = failed, None  # every other slot is busy (CC): keep ours, dial afresh
        if failed is not None:
            target.release(failed)
        if ep is None:
            log.warning("upstream %s failed for revision %s: %r", failed, target.key, exc)
            self._fail(502, "upstream connection failed\n")
            return
        self._pending = [*self._replay, *self._pending] if self._replay else self._pending
        self._pending_bytes = sum(len(p) for p in self._pending)
        self._replay, self._replay_bytes = [], 0
        self._use(ep, fresh=True)

    def _arm_timers(self, target: RevisionTarget) -> None:
        """responseStartTimeoutSeconds and idleTimeoutSeconds, on the same wheel as the total."""
        wheel = self.conn.ctx.wheel
        start = target.response_start_timeout
        if 0 < start < target.timeout_seconds:
            self._start_tick = wheel.add(start, (self, _START), self._on_start_timeout)
        idle = target.idle_timeout
        if idle > 0:
            self._last_write = self.conn.loop.time()
            self._idle_tick = wheel.add(idle, (self, _IDLE), self._on_idle_timeout)

    def _cancel_deadline(self) -> None:
        wheel = self.conn.ctx.wheel
        if self._deadline >= 0:
            wheel.remove(self._deadline, self)
            self._deadline = -1
        if self._start_tick >= 0:
            wheel.remove(self._start_tick, (self, _START))
            self._start_tick = -1
        if self._idle_tick >= 0:
            wheel.remove(self._idle_tick, (self, _IDLE))
            self._idle_tick = -1

    def _on_timeout(self) -> None:
        self._deadline = -1
        self._expire("request timeout\n")

    def _on_start_timeout(self) -> None:
        """Fires only while nothing has been written to the client: 504, as the total would."""
        self._start_tick = -1
        if not self.started:
            self._expire("response start timeout\n")

    def _on_idle_timeout(self) -> None:
        """Nothing written for idleTimeoutSeconds: 504 before the response starts, else cut it."""
        self._idle_tick = -1
        if self.finished or self.response_done or self.target is None:
            return
        quiet = self.conn.loop.time() - self._last_write
        remaining = self.target.idle_timeout - quiet
        if remaining > 0:
            self._idle_tick = self.conn.ctx.wheel.add(remaining, (self, _IDLE), self._on_idle_timeout)
            return
        self._expire("idle timeout\n")

    def _expire(self, message: str) -> None:
        """A timer ran out: answer 504 if nothing was written yet; otherwise cut the response."""
        if self.finished or self.response_done:
            return
        if not self.started:
            self._fail(504, message)
            return
        self.keep_alive = False
        self._drop_upstream()
        self._complete()
        self.conn.abort()

    def _fail(self, status: int, message: str) -> None:
        """Answer with a proxy-generated error (nothing has been written to the client yet)."""
        self._drop_upstream()
        self.respond_error(status, message.encode())

    def _drop_upstream(self) -> None:
        self._waiting = False
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        up, self.upstream = self.upstream, None
        if up is not None:
            up.abort()

    # -- completion ------------------------------------------------------------------------------
    def respond_error(self, status: int, body: bytes) -> None:
        """Write a complete plain-text response generated by the proxy."""
        if not self.request_done:
            self.discard = True
        self.status = status
        self.started = self.sent_any = True
        conn = self.conn
        keep = self.keep_alive = self.keep_alive and not conn.ctx.draining
        conn.write(simple_response(status, body, keep_alive=keep))
        self._complete()

    def _complete(self) -> None:
        """The response is fully written (or abandoned): free the endpoint and count it."""
        if self.response_done:
            return
        self.response_done = True
        self._pending = []
        self._replay = None
        if self._deadline >= 0 or self._start_tick >= 0 or self._idle_tick >= 0:
            self._cancel_deadline()
        target = self.target
        if target is not None:
            ep, self.endpoint = self.endpoint, None
            target.finish(ep, self.status)
        if not self.request_done:
            self.discard = True
        self.conn.resume(PAUSE_BUFFER | PAUSE_UPSTREAM)
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.response_done and self.request_done and not self.finished:
            self.finished = True
            self.conn.exchange_finished(self)

    def abort(self) -> None:
        """The client went away: stop everything this exchange owns."""
        if self.finished:
            return
        self.finished = True
        self._drop_upstream()
        self._complete()

    # -- in-process handlers ---------------------------------------------------------------------
    def _start_local(self, handler: LocalHandler) -> None:
        limit = self.conn.ctx.config.max_local_body
        if self.content_length > limit:
            self.keep_alive = False
            self.respond_error(413, b"request body too large\n")
            return
        self._local = handler
        self._local_body = []
        if self.expect and not self.http10 and not self.request_done:
            self.conn.write(CONTINUE)
        if self.request_done:
            self._task = self.conn.loop.create_task(self._run_local())

    def _local_piece(self, body: bytes) -> None:
        assert self._local_body is not None
        self._local_size += len(body)
        if self._local_size > self.conn.ctx.config.max_local_body:
            self._local_body = None
            self.keep_alive = False
            self.respond_error(413, b"request body too large\n")
            return
        self._local_body.append(body)

    async def _run_local(self) -> None:
        handler, body = self._local, self._local_body
        if handler is None or body is None:
            return
        ctx = self.conn.ctx
        req = self._local_request(b"".join(body))
        try:
            resp = await asyncio.wait_for(handler(req), ctx.config.local_timeout)
        except TimeoutError:
            resp = LocalResponse(504, [("Content-Type", "text/plain")], b"handler timeout\n")
        except Exception:
            log.exception("local handler for %s failed", req.header("host"))
            resp = LocalResponse(500, [("Content-Type", "text/plain")], b"internal error\n")
        self._task = None
        if not self.finished:
            self._write_local(resp)

    def _local_request(self, body: bytes) -> LocalRequest:
        url = self.url
        if not url.startswith(b"/"):
            parsed = httptools.parse_url(url)
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.partition(b"?")
        return LocalRequest(
            method=self.method.decode("latin-1"), path=path.decode("latin-1"), query=query.decode("latin-1"),
            headers=self.headers, body=body, client=self.conn.client_ip,
            http_version="1.0" if self.http10 else "1.1",
        )

    def _write_local(self, resp: LocalResponse) -> None:
        self.status = resp.status
        self.started = self.sent_any = True
        keep = self.keep_alive and not self.conn.ctx.draining
        self.keep_alive = keep
        no_body = self.method == b"HEAD" or resp.status in (204, 304) or resp.status < 200
        body = b"" if no_body else resp.body
        extra = resp.encode_headers()
        if header_value(extra, b"content-type") is None and body:
            extra.append((b"Content-Type", b"application/octet-stream"))
        out = [build_interim_head(resp.status, b"", extra)[:-2]]
        if not no_body or self.method == b"HEAD":
            out.append(b"Content-Length: %d\r\n" % len(resp.body))
        out.append(b"Connection: keep-alive\r\n\r\n" if keep and self.http10 else
                   b"\r\n" if keep else b"Connection: close\r\n\r\n")
        out.append(body)
        self.conn.write(b"".join(out))
        self._complete()
