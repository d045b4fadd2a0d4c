"""Wires store changes to reconciler queues: each change enqueues the keys it can affect."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable

from wisp.api.kinds import Kind
from wisp.controllers import traffic
from wisp.controllers.base import CONFIGURATION, REVISION, ROUTE, SERVICE, Context, Key, Obj, owner_key
from wisp.controllers.configuration import CONFIG_LABEL, reconcile_configuration
from wisp.controllers.queue import WorkQueue
from wisp.controllers.revision import reconcile_revision
from wisp.controllers.route import reconcile_route
from wisp.controllers.service import reconcile_service
from wisp.store.watch import WatchEvent

Reconciler = Callable[[Context, Key], Awaitable[None]]


class RouteIndex:
    """Which routes name a configuration or revision, so a change there re-reconciles just those."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._by_route: dict[Key, set[tuple[str, str]]] = {}

    def update(self, ns: str, route: str, refs: set[tuple[str, str]]) -> None:
        for what, name in self._by_route.pop((ns, route), set()):
            self._refs[(ns, what, name)].discard(route)
        if refs:
            self._by_route[(ns, route)] = refs
            for what, name in refs:
                self._refs[(ns, what, name)].add(route)

    def routes_for(self, ns: str, what: str, name: str) -> set[str]:
        return set(self._refs.get((ns, what, name), ()))


class ControllerManager:
    """Owns one queue per kind and feeds them from the store's change stream."""

    def __init__(self, ctx: Context, workers: int = 4) -> None:
        self.ctx = ctx
        self.index = RouteIndex()
        self.queues: dict[str, WorkQueue] = {}
        self.extra: list[Callable[[WatchEvent], None]] = []
        self._extra_kinds: list[Kind] = []
        for kind, reconciler in ((SERVICE, reconcile_service), (CONFIGURATION, reconcile_configuration),
                                 (ROUTE, reconcile_route), (REVISION, reconcile_revision)):
            self.queues[kind.key] = WorkQueue(kind.kind, self._runner(reconciler), ctx.clock, workers)
        ctx.store.subscribe(self._on_change)

    def _runner(self, reconciler: Reconciler) -> Callable[[Hashable], Awaitable[None]]:
        async def run(key: Hashable) -> None:
            assert isinstance(key, tuple)
            await reconciler(self.ctx, key)
        return run

    def enqueue(self, kind: Kind, key: Key) -> None:
        self.queues[kind.key].add(key)

    def add_kind(self, kind: Kind, handler: Callable[[Key], Awaitable[None]],
                 watch: Callable[[WatchEvent], list[Key]] | None = None) -> None:
        """Reconcile another kind with `handler`; `watch` maps any change to keys of that kind."""

        async def run(key: Hashable) -> None:
            assert isinstance(key, tuple)
            await handler(key)

        self.queues[kind.key] = WorkQueue(kind.kind, run, self.ctx.clock, 2)
        self._extra_kinds.append(kind)

        def listen(event: WatchEvent) -> None:
            if event.kind == kind.key:
                self.enqueue(kind, (event.namespace, event.name))
            for key in watch(event) if watch else []:
                self.enqueue(kind, key)

        self.extra.append(listen)

    def _on_change(self, event: WatchEvent) -> None:
        obj, ns = event.object, event.namespace
        key = (ns, event.name)
        if event.kind == SERVICE.key:
            self.enqueue(SERVICE, key)
        elif event.kind == CONFIGURATION.key:
            self.enqueue(CONFIGURATION, key)
            self._enqueue_owner(obj, SERVICE)
            self._enqueue_routes(ns, "configuration", event.name)
        elif event.kind == ROUTE.key:
            refs = set() if event.type == "DELETED" else traffic.referenced_names(obj)
            self.index.update(ns, event.name, refs)
            self.enqueue(ROUTE, key)
            self._enqueue_owner(obj, SERVICE)
        elif event.kind == REVISION.key:
            self.enqueue(REVISION, key)
            self._enqueue_owner(obj, CONFIGURATION)
            self._enqueue_routes(ns, "revision", event.name)
            config = (obj["metadata"].get("labels") or {}).get(CONFIG_LABEL)
            if config:
                self._enqueue_routes(ns, "configuration", config)
        for listener in self.extra:
            listener(event)

    def _enqueue_owner(self, obj: Obj, owner_kind: Kind) -> None:
        owner = owner_key(obj, owner_kind)
        if owner is not None:
            self.enqueue(owner_kind, owner)

    def _enqueue_routes(self, ns: str, what: str, name: str) -> None:
        for route in self.index.routes_for(ns, what, name):
            self.enqueue(ROUTE, (ns, route))

    def start(self) -> None:
        """Start the workers and resync: every stored object is reconciled once at start-up."""
        for route in self.ctx.store.list(ROUTE):
            self.index.update(route["metadata"]["namespace"], route["metadata"]["name"],
                              traffic.referenced_names(route))
        for queue in self.queues.values():
            queue.start()
        for kind in (SERVICE, CONFIGURATION, ROUTE, REVISION, *self._extra_kinds):
            for obj in self.ctx.store.list(kind):
                self.enqueue(kind, (obj["metadata"]["namespace"], obj["metadata"]["name"]))

    async def stop(self) -> None:
        for queue in self.queues.values():
            await queue.stop()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no queue has work (several rounds, since one queue feeds another)."""
        for _ in range(10):
            for queue in self.queues.values():
                await queue.wait_idle(timeout)
            if all(q._idle.is_set() for q in self.queues.values()):
                return
