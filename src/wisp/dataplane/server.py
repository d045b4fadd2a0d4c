"""The ingress server: listens, owns the client connections, drains on stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from wisp.dataplane.proxy import ClientConnection, ProxyContext, ServerMetrics
from wisp.dataplane.settings import RouterConfig
from wisp.dataplane.table import RoutingTable

log = logging.getLogger("wisp.dataplane")


class IngressServer:
    """The HTTP/1.1 reverse proxy in front of every revision (and wisp's own in-process hosts).

    Runs on whatever loop is current (``wisp serve`` installs uvloop). ``stop`` stops accepting,
    lets in-flight requests finish within ``drain_timeout``, closes idle keep-alive connections
    and then cuts whatever is left.
    """

    def __init__(self, table: RoutingTable, config: RouterConfig | None = None) -> None:
        self.table = table
        self.config = config or RouterConfig()
        self._ctx: ProxyContext | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.host = ""
        self.port = 0

    @property
    def metrics(self) -> ServerMetrics:
        """Server-wide counters (per-revision ones live on ``RevisionTarget.metrics``)."""
        return self._ctx.metrics if self._ctx is not None else ServerMetrics()

    @property
    def connections(self) -> int:
        """Open client connections."""
        return len(self._ctx.connections) if self._ctx is not None else 0

    async def start(self, host: str = "127.0.0.1", port: int = 8080, *, backlog: int = 2048) -> None:
        """Bind and start accepting; ``port=0`` picks a free port (see ``self.port``)."""
        if self._server is not None:
            raise RuntimeError("ingress server already started")
        loop = asyncio.get_running_loop()
        ctx = ProxyContext(self.table, self.config, loop)
        self._ctx = ctx
        self._server = await loop.create_server(
            lambda: ClientConnection(ctx), host, port, backlog=backlog, reuse_address=True,
        )
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], int(sockname[1])
        self._sweeper = loop.create_task(self._sweep_idle(), name="wisp-ingress-idle-sweeper")
        log.info("ingress listening on %s:%d", self.host, self.port)

    async def _sweep_idle(self) -> None:
        """Close keep-alive connections idle past the timeout (one timer for all, not per request)."""
        assert self._ctx is not None
        ctx = self._ctx
        timeout = self.config.keepalive_timeout
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = ctx.loop.time()
            for conn in list(ctx.connections):
                if conn.is_idle() and now - conn.idle_since > timeout:
                    conn.close()

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests (up to ``drain_timeout``), close the rest."""
        server, ctx = self._server, self._ctx
        if server is None or ctx is None:
            return
        self._server = None
        ctx.draining = True
        server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._close_idle(ctx)
        await self._wait_drained(ctx, drain_timeout)
        for conn in list(ctx.connections):
            conn.abort()
        self.table.close()
        ctx.wheel.close()
        await server.wait_closed()
        log.info("ingress on %s:%d stopped", self.host, self.port)

    @staticmethod
    def _close_idle(ctx: ProxyContext) -> None:
        for conn in list(ctx.connections):
            if conn.is_idle():
                conn.close()

    @staticmethod
    async def _wait_drained(ctx: ProxyContext, drain_timeout: float) -> None:
        deadline = ctx.loop.time() + drain_timeout
        while ctx.connections and ctx.loop.time() < deadline:
            # Connections that finish their last exchange close themselves (ctx.draining).
            IngressServer._close_idle(ctx)
            await asyncio.sleep(0.02)
