"""`wisp serve`: the whole platform in one asyncio process — store, API, controllers, data plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.routing import Mount

from wisp.api.kinds import lookup as lookup_kind
from wisp.apiserver.app import create_app
from wisp.apiserver.logs import log_routes
from wisp.build import ImageStore
from wisp.build.registry import Registry
from wisp.clock import Clock, SystemClock
from wisp.config import Config
from wisp.controllers.base import REVISION, ROUTE, SERVICE, Context
from wisp.controllers.ingress import DOMAIN_MAPPING, IngressProgrammer, reconcile_domain_mapping
from wisp.controllers.instances import RevisionRuntime
from wisp.controllers.manager import ControllerManager
from wisp.controllers.urls import URLMaker
from wisp.dataplane.server import IngressServer
from wisp.dataplane.settings import RouterConfig
from wisp.dataplane.table import RoutingTable
from wisp.eventing.messaging import MessagingSystem
from wisp.eventing.system import EventingSystem
from wisp.observability.metrics import metrics_routes
from wisp.runtime import create_backend
from wisp.store import Store
from wisp.store.watch import WatchEvent

log = logging.getLogger("wisp")
SINKBINDING = lookup_kind("sinkbindings")


class StartupError(Exception):
    """`wisp serve` cannot start as configured (a port is taken, …); the message says which."""


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A bound, listening TCP socket, or a StartupError naming the listener and the reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def split_addr(addr: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `:port` or `host` → (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr or "127.0.0.1", default_port
    return host or "127.0.0.1", int(port)


@dataclass
class Settings:
    """Where `wisp serve` keeps state and listens."""

    data_dir: Path
    api_addr: str = "127.0.0.1:9477"
    ingress_addr: str = "127.0.0.1:8080"
    config_path: Path | None = None
    config: Config = field(default_factory=Config)

    @property
    def api(self) -> tuple[str, int]:
        return split_addr(self.api_addr, 9477)

    @property
    def ingress(self) -> tuple[str, int]:
        return split_addr(self.ingress_addr, 8080)


class Platform:
    """Starts and stops every component in dependency order."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {settings.data_dir}: "
                               f"{exc.strerror or exc}") from None
        self.store = Store(settings.data_dir / "state.db", clock=self.clock)
        self.store.ensure_namespace("default")
        urls = URLMaker(settings.config.network, settings.ingress[1])
        self.ctx = Context(self.store, settings.config, self.clock, urls)
        self.controllers = ControllerManager(self.ctx)
        self.table = RoutingTable(self.clock)
        self.ingress = IngressServer(self.table, RouterConfig.from_config(settings.config))
        self.images = ImageStore(settings.data_dir / "images")
        self.registry = Registry(self.images, clock=self.clock)
        self.backend = create_backend(settings.config.runtime.default, settings.data_dir, self.clock)
        # Revisions may pick another backend (`wisp.dev/runtime: function|process`); only these two are
        # local and cheap to construct (the function backend starts zygotes on first use).
        self.backends = {name: self.backend if name == settings.config.runtime.default
                         else create_backend(name, settings.data_dir, self.clock)
                         for name in ("process", "function")}
        self.programmer = IngressProgrammer(self.ctx, self.table)
        self.eventing = EventingSystem(self.ctx, self.table, settings.data_dir, self.clock,
                                       ingress=settings.ingress)
        api_host, api_port = settings.api
        self.messaging = MessagingSystem(self.ctx, self.table, self.eventing, settings.data_dir,
                                         runtime=self.backends["process"], images=self.images,
                                         api_url=f"http://{api_host}:{api_port}")
        self.revisions = RevisionRuntime(self.ctx, self.table, self.backend, self.images,
                                         lambda key: self.controllers.enqueue(REVISION, key),
                                         backends=self.backends)
        self._wire_serving()
        self._api_server: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None

    def _wire_serving(self) -> None:
        hooks = self.ctx.hooks
        hooks["ensure_revision"] = self.revisions.ensure
        hooks["revision_deleted"] = self.revisions.forget
        hooks["program_route"] = self.programmer.program
        hooks["unprogram_route"] = self.programmer.unprogram

        async def domain_mapping(key: tuple[str, str]) -> None:
            await reconcile_domain_mapping(self.ctx, self.programmer, key)

        def related(event: WatchEvent) -> list[tuple[str, str]]:
            if event.kind == DOMAIN_MAPPING.key and event.type == "DELETED":
                return [(m["metadata"]["namespace"], m["metadata"]["name"])
                        for m in self.store.list(DOMAIN_MAPPING) if m["metadata"]["name"] == event.name]
            if event.kind in (ROUTE.key, SERVICE.key):
                return [(event.namespace, m["metadata"]["name"])
                        for m in self.store.list(DOMAIN_MAPPING, event.namespace)]
            return []

        self.controllers.add_kind(DOMAIN_MAPPING, domain_mapping, related)

        def env_sources(event: WatchEvent) -> None:
            # A SinkBinding's sink is part of its subjects' instance env: roll them when it moves.
            if event.kind == SINKBINDING.key:
                self.revisions.refresh_env_soon(event.namespace)

        self.store.subscribe(env_sources)

    async def start(self) -> None:
        """Bind both listeners first (so a taken port fails fast and cleanly), then start the rest."""
        host, port = self.settings.api
        api_sock = listen_socket(host, port, "API")
        ihost, iport = self.settings.ingress
        try:
            await self.ingress.start(ihost, iport)
        except OSError as exc:
            api_sock.close()
            raise StartupError(f"cannot listen on {ihost}:{iport} (ingress): {exc.strerror or exc}") from None
        stale = await self.backend.cleanup_stale()
        if stale:
            log.info("stopped %d instance(s) left by a previous wisp", stale)
        await self.eventing.start()
        await self.messaging.start()
        extra = [*log_routes(self.store, self.settings.data_dir), *metrics_routes(),
                 Mount("/v2", routes=self.registry.routes)]
        app = create_app(self.store, self.settings.config, server_address=f"{host}:{port}", extra_routes=extra)
        config = uvicorn.Config(app, loop="none", lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2)
        self._api_server = uvicorn.Server(config)
        self._api_task = asyncio.create_task(self._api_server.serve(sockets=[api_sock]))
        while not self._api_server.started:
            if self._api_task.done():
                self._api_task.result()
                raise StartupError(f"the API server could not start on {host}:{port}")
            await asyncio.sleep(0.01)
        self.controllers.start()
        log.info("wisp API on http://%s:%d", host, port)

    async def stop(self) -> None:
        await self.controllers.stop()
        await self.ingress.stop(drain_timeout=5)
        await self.messaging.stop()
        await self.eventing.stop()
        await self.revisions.close()
        for backend in {id(b): b for b in (self.backend, *self.backends.values())}.values():
            await backend.close(self.settings.config.deployment.termination_grace_period)
        self.store.hub.close_all()  # end watch streams so the API server can stop at once
        if self._api_server is not None and self._api_task is not None:
            self._api_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, 5)
        self.registry.close()
        self.table.close()
        self.store.close()


async def serve_forever(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly."""
    platform = Platform(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await platform.start()
    try:
        await stop.wait()
    finally:
        await platform.stop()


def run(settings: Settings) -> None:
    """Blocking entry point for `wisp serve`, on uvloop where available."""
    try:
        import uvloop

        uvloop.run(serve_forever(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        asyncio.run(serve_forever(settings))
