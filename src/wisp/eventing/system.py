"""`EventingSystem`: the eventing half of `wisp serve`.

It owns the event log, the broker ingress (an in-process handler on the routing table), one
`TriggerDispatcher` per deliverable Trigger, and two work queues that keep Broker and Trigger
status level-based: any change to a Broker, a Trigger, or an object one of them refers to
(subscriber Service, dead-letter sink) re-reconciles exactly the objects that depend on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Hashable
from pathlib import Path

from wisp.clock import Clock
from wisp.controllers.base import Context, Key, Obj, write_status
from wisp.controllers.queue import WorkQueue
from wisp.dataplane.table import RoutingTable
from wisp.eventing.broker import BrokerIngress, stream_name
from wisp.eventing.cloudevents import CloudEvent
from wisp.eventing.destinations import HttpSender
from wisp.eventing.dispatch import Sender, TriggerDispatcher, TriggerSpec
from wisp.eventing.dispatchers import DispatcherSet
from wisp.eventing.log import EventLog, EventLogError, open_backend
from wisp.eventing.metrics import EventingMetrics, default_metrics
from wisp.eventing.reconcilers import (
    BROKER,
    TRIGGER,
    TRIGGER_CONDITIONS,
    broker_status,
    dependencies,
    ingress_host,
    plan_trigger,
)
from wisp.store.watch import WatchEvent

__all__ = ["EventingSystem"]

log = logging.getLogger("wisp.eventing")

Dep = tuple[str, str, str]


def open_event_log(ctx: Context, data_dir: Path, clock: Clock) -> EventLog:
    """The configured backend; sqlite lives in `<data-dir>/events.db`."""
    backend = ctx.config.eventing.backend
    if backend == "sqlite":
        return open_backend("sqlite", path=data_dir / "events.db", clock=clock)
    return open_backend(backend, clock=clock)


class EventingSystem:
    """Brokers, Triggers and their data plane in one process (see the module docstring)."""

    def __init__(self, ctx: Context, table: RoutingTable, data_dir: Path, clock: Clock | None = None, *,
                 ingress: tuple[str, int] | None = None, event_log: EventLog | None = None,
                 sender: Sender | None = None, metrics: EventingMetrics | None = None) -> None:
        self.ctx = ctx
        self.table = table
        self.clock = clock or ctx.clock
        self.log = event_log or open_event_log(ctx, data_dir, self.clock)
        self.metrics = metrics or default_metrics()
        self.ingress = BrokerIngress(self.log, self.clock, self.metrics)
        self._observers: list[Callable[[str, str, CloudEvent], None]] = []
        address = ingress or ("127.0.0.1", ctx.urls.ingress_port)
        self._own_sender = sender is None
        self.sender: Sender = sender or HttpSender(ctx.config.network.domain, address)
        self.dispatchers = _TriggerDispatchers(self)
        self._deps: dict[Dep, set[tuple[str, Key]]] = defaultdict(set)
        self._deps_of: dict[tuple[str, Key], set[Dep]] = {}
        self._brokers = WorkQueue("Broker", self._broker_job, self.clock, workers=2)
        self._triggers = WorkQueue("Trigger", self._trigger_job, self.clock, workers=4)
        self._running = False
        self._host = ingress_host(ctx.config.network.domain)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the log, register existing brokers, serve the ingress, reconcile everything."""
        await self.log.open()
        brokers = self.ctx.store.list(BROKER)
        for broker in brokers:  # before serving, so a restart never answers 404 for a known broker
            self.ingress.add_broker(broker["metadata"]["namespace"], broker["metadata"]["name"])
        self._running = True
        self.ctx.store.subscribe(self._on_change)
        self.table.set_local_handler(self._host, self.ingress.handle)
        self._brokers.start()
        self._triggers.start()
        for broker in brokers:
            self._brokers.add(_key(broker))
        for trigger in self.ctx.store.list(TRIGGER):
            self._triggers.add(_key(trigger))

    async def stop(self) -> None:
        """Stop accepting, stop reconciling, cancel dispatchers, close the log."""
        self._running = False
        self.table.set_local_handler(self._host, None)
        await self._brokers.stop()
        await self._triggers.stop()
        await self.dispatchers.stop()
        if self._own_sender and isinstance(self.sender, HttpSender):
            await self.sender.aclose()
        await self.log.close()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until both queues are drained (tests and `wisp serve` start-up use this)."""
        for _ in range(3):
            await self._brokers.wait_idle(timeout)
            await self._triggers.wait_idle(timeout)

    def add_observer(self, observer: Callable[[str, str, CloudEvent], None]) -> None:
        """See every event a broker accepts (HTTP or reply) after it is stored.

        The ingress is wrapped only once the first observer arrives (EventType auto-creation),
        so brokers pay nothing for it otherwise. Dispatchers started earlier keep publishing their
        replies unobserved until they restart.
        """
        if not self._observers:
            publish = self.ingress.publish

            async def observed(namespace: str, name: str, event: CloudEvent) -> int:
                offset = await publish(namespace, name, event)
                for fn in self._observers:
                    fn(namespace, name, event)
                return offset

            self.ingress.publish = observed  # type: ignore[method-assign]
        self._observers.append(observer)

    # -- change routing --------------------------------------------------------------------
    def _on_change(self, event: WatchEvent) -> None:
        if not self._running:
            return
        key = (event.namespace, event.name)
        if event.kind == BROKER.key:
            self._brokers.add(key)
        elif event.kind == TRIGGER.key:
            self._triggers.add(key)
        for kind, dependent in list(self._deps.get((event.kind, event.namespace, event.name), ())):
            (self._brokers if kind == BROKER.key else self._triggers).add(dependent)

    def _track(self, kind: str, key: Key, obj: Obj | None) -> None:
        owner = (kind, key)
        for dep in self._deps_of.pop(owner, set()):
            self._deps[dep].discard(owner)
        if obj is not None:
            deps = dependencies(obj)
            self._deps_of[owner] = deps
            for dep in deps:
                self._deps[dep].add(owner)

    # -- reconcilers -----------------------------------------------------------------------
    async def _broker_job(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        ns, name = key
        broker = self.ctx.store.find(BROKER, ns, name)
        self._track(BROKER.key, key, broker)
        if broker is None:
            self.ingress.remove_broker(ns, name)
            with contextlib.suppress(EventLogError):
                await self.log.delete_stream(stream_name(ns, name))
            return
        self.ingress.add_broker(ns, name)
        write_status(self.ctx, BROKER, broker, broker_status(self.ctx, broker))

    async def _trigger_job(self, key: Hashable) -> None:
        assert isinstance(key, tuple)
        trigger = self.ctx.store.find(TRIGGER, *key)
        self._track(TRIGGER.key, key, trigger)
        if trigger is None:
            await self.dispatchers.remove(key, delete_consumer=True)
            return
        plan = plan_trigger(self.ctx, trigger)
        now = self.ctx.now()
        if await self.dispatchers.sync(key, plan.spec):
            TRIGGER_CONDITIONS.mark_true(plan.trigger, "SubscriptionReady", now)
        elif TRIGGER_CONDITIONS._dependent(plan.trigger, "SubscriptionReady").get("status") != "False":
            TRIGGER_CONDITIONS.mark_unknown(plan.trigger, "SubscriptionReady", "NotDeliverable",
                                            "waiting for the broker and the subscriber", now)
        write_status(self.ctx, TRIGGER, trigger, plan.trigger)


class _TriggerDispatchers(DispatcherSet[TriggerSpec]):
    """Trigger dispatchers read their broker's stream in the system's event log."""

    def __init__(self, system: EventingSystem) -> None:
        super().__init__()
        self._system = system

    def _create(self, spec: TriggerSpec) -> TriggerDispatcher:
        # `ingress.publish` is read now: it is wrapped once EventTypes are observed (see add_observer).
        s = self._system
        return TriggerDispatcher(spec, s.log, s.sender, s.ingress.publish, s.clock, s.metrics)

    def _log_of(self, spec: TriggerSpec) -> EventLog:
        return self._system.log

    def _same_run(self, old: TriggerSpec, new: TriggerSpec) -> bool:
        return old.consumer == new.consumer and old.ordered == new.ordered and old.broker == new.broker

    def _drops_consumer(self, old: TriggerSpec, new: TriggerSpec) -> bool:
        return old.consumer != new.consumer

    def _started(self, spec: TriggerSpec) -> None:
        log.info("%s/trigger/%s: dispatching to %s", spec.namespace, spec.name, spec.subscriber)


def _key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]
