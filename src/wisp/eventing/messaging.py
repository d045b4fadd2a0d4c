"""`MessagingSystem`: channels, subscriptions, flows and sources inside `wisp serve`.

It sits next to `EventingSystem` (Brokers and Triggers) and shares its event log, its HTTP
sender and its clock. It owns:

* the channel ingress (local handler `channels.<domain>`) and a memory log for InMemoryChannels;
* one `SubscriptionDispatcher` per deliverable Subscription;
* the Sequence/Parallel reconcilers, which own channels and subscriptions;
* the PingSource scheduler, ApiServerSource watchers, ContainerSource processes and SinkBinding
  status (see their modules).

Reconciliation is level-based with one `WorkQueue` per kind. Dependencies are coarse on purpose:
any change to something a Destination can point at (Service, Broker, channel, flow) re-queues
every Subscription, source and flow of that namespace; a reconcile that changes nothing writes
nothing, so this converges, and wisp's object counts keep it cheap.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any

from wisp.api import kinds
from wisp.api.errors import APIError
from wisp.api.kinds import Kind
from wisp.build import ImageStore
from wisp.controllers.base import Context, Key, Obj, working_copy, write_status
from wisp.controllers.instancespec import SpecError
from wisp.controllers.queue import WorkQueue
from wisp.dataplane.table import RoutingTable
from wisp.eventing.apiserversource import ApiServerWatcher, api_spec
from wisp.eventing.channels import (
    CHANNEL,
    CHANNEL_KINDS,
    IMC,
    ChannelIngress,
    channel_host,
    channel_status,
    channel_stream,
    parse_channel_url,
)
from wisp.eventing.cloudevents import CloudEvent
from wisp.eventing.containersource import ContainerSources, container_instance_spec
from wisp.eventing.cron import InvalidSchedule
from wisp.eventing.dispatch import TriggerDispatcher, TriggerSpec
from wisp.eventing.dispatchers import DispatcherSet
from wisp.eventing.eventtypes import EventTypeRecorder, auto_create_enabled
from wisp.eventing.flows import PARALLEL, SEQUENCE, desired_parallel, desired_sequence, flow_status
from wisp.eventing.log import EventLog, EventLogError, open_backend
from wisp.eventing.ping import PingScheduler, PingSpec, SqliteTicks, ping_spec
from wisp.eventing.sources import SOURCE_CONDITIONS, ce_overrides, overrides_env, post_event, resolve_sink
from wisp.eventing.subscriptions import (
    SUBSCRIPTION,
    SUBSCRIPTION_CONDITIONS,
    SubscriptionDispatcher,
    SubscriptionSpec,
    plan_subscription,
)
from wisp.eventing.system import EventingSystem
from wisp.runtime.base import RuntimeBackend
from wisp.store.watch import WatchEvent

__all__ = ["MessagingSystem"]

log = logging.getLogger("wisp.eventing.messaging")

PING = kinds.lookup("pingsources")
APISERVER = kinds.lookup("apiserversources")
CONTAINER = kinds.lookup("containersources")
SINKBINDING = kinds.lookup("sinkbindings")
KSVC = kinds.lookup("ksvc")
BROKER = kinds.lookup("brokers")

# Kinds a Destination can name: a change to one may change what dependents resolve to.
_ADDRESSABLE = {KSVC.key, BROKER.key, CHANNEL.key, IMC.key, SEQUENCE.key, PARALLEL.key}
_DEPENDENTS = (SUBSCRIPTION, PING, APISERVER, CONTAINER, SINKBINDING, SEQUENCE, PARALLEL)

Job = Callable[[Key], Awaitable[None]]


class MessagingSystem:
    """Channels, Subscriptions, Sequence/Parallel and sources (see the module docstring)."""

    def __init__(self, ctx: Context, table: RoutingTable, eventing: EventingSystem, data_dir: Path, *,
                 runtime: RuntimeBackend | None = None, images: ImageStore | None = None,
                 api_url: str = "") -> None:
        self.ctx = ctx
        self.images = images
        self.table = table
        self.eventing = eventing
        self.clock = eventing.clock
        self.data_dir = data_dir
        self.memory_log = open_backend("memory", clock=self.clock)
        self.channels = ChannelIngress(eventing.log, self.memory_log, self.clock)
        self.dispatchers = _SubscriptionDispatchers(self)
        self._ticks: SqliteTicks | None = None
        self.ping: PingScheduler | None = None
        self.apiserver = ApiServerWatcher(api_url or "wisp-apiserver", self.emit)
        self.containers = ContainerSources(runtime, self.clock, lambda key: self.enqueue(CONTAINER, key)) \
            if runtime is not None else None
        self.event_types = EventTypeRecorder(ctx)
        self._observing = False
        self._host = channel_host(ctx.config.network.domain)
        self._running = False
        self._queues: dict[str, WorkQueue] = {}
        self._kinds: dict[str, Kind] = {}
        for kind, job in self._jobs().items():
            self.add_kind(kind, job)

    def _jobs(self) -> dict[Kind, Job]:
        return {CHANNEL: lambda key: self._channel_job(CHANNEL, key),
                IMC: lambda key: self._channel_job(IMC, key),
                SUBSCRIPTION: self._subscription_job, SEQUENCE: self._sequence_job,
                PARALLEL: self._parallel_job, PING: self._ping_job, APISERVER: self._apiserver_job,
                CONTAINER: self._container_job, SINKBINDING: self._sinkbinding_job}

    @staticmethod
    def _runner(job: Job) -> Callable[[Hashable], Awaitable[None]]:
        async def run(key: Hashable) -> None:
            assert isinstance(key, tuple)
            await job(key)
        return run

    def add_kind(self, kind: Kind, job: Job) -> None:
        """Reconcile another kind here (sources modules register themselves through this)."""
        self._queues[kind.key] = WorkQueue(kind.kind, self._runner(job), self.clock, workers=2)
        self._kinds[kind.key] = kind

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.memory_log.open()
        self._ticks = SqliteTicks(self.data_dir / "sources.db")
        self.ping = PingScheduler(self.clock, self._ticks, self._emit_ping)
        for kind in (CHANNEL, IMC):
            for obj in self.ctx.store.list(kind):
                self.channels.add_channel(obj["metadata"]["namespace"], kind.plural, obj["metadata"]["name"])
        for broker in self.ctx.store.list(BROKER):
            self._track_event_types(broker["metadata"]["namespace"], broker["metadata"]["name"], broker)
        self._running = True
        self.ctx.store.subscribe(self._on_change)
        self.table.set_local_handler(self._host, self.channels.handle)
        for queue in self._queues.values():
            queue.start()
        for key, kind in self._kinds.items():
            for obj in self.ctx.store.list(kind):
                self._queues[key].add((obj["metadata"]["namespace"], obj["metadata"]["name"]))

    async def stop(self) -> None:
        self._running = False
        self.table.set_local_handler(self._host, None)
        for queue in self._queues.values():
            await queue.stop()
        await self.dispatchers.stop()
        await self.apiserver.close()
        if self.containers is not None:
            await self.containers.close()
        if self.ping is not None:
            await self.ping.close()
        if self._ticks is not None:
            self._ticks.close()
        await self.memory_log.close()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        for _ in range(4):
            for queue in self._queues.values():
                await queue.wait_idle(timeout)

    # -- change routing --------------------------------------------------------------------
    def enqueue(self, kind: Kind, key: Key) -> None:
        queue = self._queues.get(kind.key)
        if queue is not None and self._running:
            queue.add(key)

    def _on_change(self, event: WatchEvent) -> None:
        if not self._running:
            return
        key = (event.namespace, event.name)
        self.apiserver.on_change(event)
        if event.kind == BROKER.key:
            self._track_event_types(event.namespace, event.name, None if event.type == "DELETED" else event.object)
        if event.kind in self._queues:
            self._queues[event.kind].add(key)
        obj = event.object
        if event.kind == SUBSCRIPTION.key:
            ref = (obj.get("spec") or {}).get("channel") or {}
            kind = CHANNEL_KINDS.get(str(ref.get("kind", "")))
            if kind is not None:
                self.enqueue(kind, (event.namespace, str(ref.get("name", ""))))
        if event.kind in _ADDRESSABLE or event.kind == SUBSCRIPTION.key:
            self._enqueue_dependents(event.namespace, skip=(event.kind, event.name))

    def _enqueue_dependents(self, namespace: str, skip: tuple[str, str]) -> None:
        for kind in _DEPENDENTS:
            if kind.key not in self._queues:
                continue
            for obj in self.ctx.store.list(kind, namespace):
                if (kind.key, obj["metadata"]["name"]) != skip:
                    self._queues[kind.key].add((namespace, obj["metadata"]["name"]))

    # -- channels ----------------------------------------------------------------------------
    async def _channel_job(self, kind: Kind, key: Key) -> None:
        ns, name = key
        obj = self.ctx.store.find(kind, ns, name)
        if obj is None:
            backing = self.channels.remove_channel(ns, kind.plural, name)
            if backing is not None:
                with contextlib.suppress(EventLogError):
                    await backing.delete_stream(channel_stream(ns, kind.plural, name))
            return
        self.channels.add_channel(ns, kind.plural, name)
        subs = [s for s in self.ctx.store.list(SUBSCRIPTION, ns)
                if ((s.get("spec") or {}).get("channel") or {}).get("name") == name
                and ((s.get("spec") or {}).get("channel") or {}).get("kind") == kind.kind]
        write_status(self.ctx, kind, obj, channel_status(self.ctx, obj, subs))

    async def publish_local(self, url: str, event: CloudEvent) -> bool:
        """Publish in-process when `url` is one of our channels (replies skip HTTP)."""
        target = parse_channel_url(url, self.ctx.config.network.domain)
        if target is None:
            return False
        await self.channels.publish(*target, event)
        return True

    # -- subscriptions -----------------------------------------------------------------------
    async def _subscription_job(self, key: Key) -> None:
        sub = self.ctx.store.find(SUBSCRIPTION, *key)
        if sub is None:
            await self.dispatchers.remove(key, delete_consumer=True)
            return
        plan = plan_subscription(self.ctx, sub)
        now = self.ctx.now()
        if await self.dispatchers.sync(key, plan.spec):
            SUBSCRIPTION_CONDITIONS.mark_true(plan.subscription, "AddedToChannel", now)
        else:
            SUBSCRIPTION_CONDITIONS.mark_unknown(plan.subscription, "AddedToChannel", "NotDeliverable",
                                                 "waiting for the channel and the destinations", now)
        write_status(self.ctx, SUBSCRIPTION, sub, plan.subscription)

    # -- flows -------------------------------------------------------------------------------
    async def _sequence_job(self, key: Key) -> None:
        await self._flow_job(SEQUENCE, key, desired_sequence)

    async def _parallel_job(self, key: Key) -> None:
        await self._flow_job(PARALLEL, key, desired_parallel)

    async def _flow_job(self, kind: Kind, key: Key, desired: Callable[[Obj], tuple[list[Obj], list[Obj]]]) -> None:
        flow = self.ctx.store.find(kind, *key)
        if flow is None:
            return  # children go with it: they carry ownerReferences
        channels, subs = desired(flow)
        live_channels = [self._apply_child(flow, c) for c in channels]
        live_subs = [self._apply_child(flow, s) for s in subs]
        self._prune(flow, {(c["kind"], c["metadata"]["name"]) for c in channels + subs})
        address = live_channels[0] if live_channels else None
        write_status(self.ctx, kind, flow, flow_status(flow, live_channels, live_subs, address, self.ctx.now()))

    def _apply_child(self, flow: Obj, child: Obj) -> Obj | None:
        """Create the child, or bring its spec back to what the flow wants."""
        kind = kinds.by_api_version(child["apiVersion"], child["kind"])
        ns, name = child["metadata"]["namespace"], child["metadata"]["name"]
        current = self.ctx.store.find(kind, ns, name)
        try:
            if current is None:
                return self.ctx.store.create(kind, child)
            if current.get("spec") != child.get("spec"):
                return self.ctx.store.update(kind, {**current, "spec": child["spec"]})
        except APIError as e:
            log.warning("%s/%s/%s: cannot apply %s %s: %s", ns, flow["kind"].lower(), flow["metadata"]["name"],
                        child["kind"], name, e)
            return current
        return current

    def _prune(self, flow: Obj, wanted: set[tuple[str, str]]) -> None:
        """Delete children the flow no longer wants (after removing a step or a branch)."""
        uid = flow["metadata"].get("uid", "")
        for kind, ns, name in self.ctx.store.owned_by(uid):
            if (kind.kind, name) not in wanted:
                with contextlib.suppress(APIError):
                    self.ctx.store.delete(kind, ns, name)

    # -- PingSource --------------------------------------------------------------------------
    async def _ping_job(self, key: Key) -> None:
        assert self.ping is not None
        obj = self.ctx.store.find(PING, *key)
        if obj is None:
            old = self.ping.spec(key)
            self.ping.remove(key, forget_uid=old.uid if old else None)
            return
        out = working_copy(obj)
        now = self.ctx.now()
        SOURCE_CONDITIONS.initialize(out, now)
        sink = resolve_sink(self.ctx, out)
        spec: PingSpec | None = None
        if sink:
            try:
                spec = ping_spec(obj, sink, ce_overrides(obj))
            except InvalidSchedule as e:
                SOURCE_CONDITIONS.mark_false(out, "Deployed", "InvalidSchedule", str(e), now)
        if spec is None:
            self.ping.remove(key)
            if not sink:
                SOURCE_CONDITIONS.mark_unknown(out, "Deployed", "SinkNotResolved", "waiting for the sink", now)
        else:
            self.ping.ensure(spec)
            SOURCE_CONDITIONS.mark_true(out, "Deployed", now)
        out["status"]["observedGeneration"] = obj["metadata"].get("generation", 1)
        write_status(self.ctx, PING, obj, out)

    async def _emit_ping(self, spec: PingSpec, event: CloudEvent) -> None:
        await self.emit(spec.sink, event, f"{spec.namespace}/pingsource/{spec.name}")

    async def emit(self, url: str, event: CloudEvent, what: str) -> bool:
        """Send a source's event to its sink (in-process for local channels), with retries."""
        try:
            if await self.publish_local(url, event):
                return True
        except Exception as e:  # a local channel refused: fall back to HTTP, which retries
            log.debug("%s: local publish failed (%s); using HTTP", what, e)
        return await post_event(self.eventing.sender, self.clock, url, event, what=what)

    # -- ApiServerSource, ContainerSource, SinkBinding ------------------------------------------
    def _source_status(self, kind: Kind, key: Key) -> tuple[Obj | None, Obj, str | None]:
        """(stored object, working copy with the sink resolved, sink URI)."""
        obj = self.ctx.store.find(kind, *key)
        if obj is None:
            return None, {}, None
        out = working_copy(obj)
        SOURCE_CONDITIONS.initialize(out, self.ctx.now())
        out["status"]["observedGeneration"] = obj["metadata"].get("generation", 1)
        return obj, out, resolve_sink(self.ctx, out)

    async def _apiserver_job(self, key: Key) -> None:
        obj, out, sink = self._source_status(APISERVER, key)
        if obj is None or not sink:
            self.apiserver.remove(key)
            if obj is not None:
                SOURCE_CONDITIONS.mark_unknown(out, "Deployed", "SinkNotResolved", "waiting for the sink",
                                               self.ctx.now())
                write_status(self.ctx, APISERVER, obj, out)
            return
        self.apiserver.ensure(api_spec(obj, sink, ce_overrides(obj)))
        SOURCE_CONDITIONS.mark_true(out, "Deployed", self.ctx.now())
        write_status(self.ctx, APISERVER, obj, out)

    async def _container_job(self, key: Key) -> None:
        obj, out, sink = self._source_status(CONTAINER, key)
        now = self.ctx.now()
        if obj is None or not sink or self.containers is None:
            if self.containers is not None:
                await self.containers.remove(key)
            if obj is not None:
                reason, message = ("SinkNotResolved", "waiting for the sink") if not sink else \
                    ("NoRuntime", "this wisp has no runtime backend for programs")
                SOURCE_CONDITIONS.mark_unknown(out, "Deployed", reason, message, now)
                write_status(self.ctx, CONTAINER, obj, out)
            return
        try:
            spec = container_instance_spec(self.ctx.store, self.images, obj, sink, overrides_env(obj))
        except SpecError as e:
            await self.containers.remove(key)
            SOURCE_CONDITIONS.mark_false(out, "Deployed", e.reason, e.message, now)
            write_status(self.ctx, CONTAINER, obj, out)
            return
        await self.containers.ensure(key, spec)
        self._container_condition(out, self.containers.status(key), now)
        write_status(self.ctx, CONTAINER, obj, out)

    @staticmethod
    def _container_condition(out: Obj, status: Any, now: float) -> None:
        if status is not None and status.actual >= 1:
            SOURCE_CONDITIONS.mark_true(out, "Deployed", now)
        elif status is not None and status.failure is not None:  # down and restarting with backoff
            SOURCE_CONDITIONS.mark_false(out, "Deployed", status.failure.reason, status.failure.message, now)
        else:
            SOURCE_CONDITIONS.mark_unknown(out, "Deployed", "Starting", "the program is starting", now)

    async def _sinkbinding_job(self, key: Key) -> None:
        obj, out, sink = self._source_status(SINKBINDING, key)
        if obj is None:
            return
        if sink:
            SOURCE_CONDITIONS.mark_true(out, "Deployed", self.ctx.now())
        else:
            SOURCE_CONDITIONS.mark_unknown(out, "Deployed", "SinkNotResolved", "waiting for the sink", self.ctx.now())
        write_status(self.ctx, SINKBINDING, obj, out)

    # -- EventType auto-creation -------------------------------------------------------------
    def _track_event_types(self, namespace: str, name: str, broker: Obj | None) -> None:
        self.event_types.set_enabled(namespace, name, broker is not None and auto_create_enabled(broker))
        if self.event_types.active and not self._observing:
            self._observing = True
            self.eventing.add_observer(self.event_types.observe)


class _SubscriptionDispatchers(DispatcherSet[SubscriptionSpec]):
    """Subscription dispatchers read their channel's stream in the log backing that channel kind."""

    def __init__(self, system: MessagingSystem) -> None:
        super().__init__()
        self._system = system

    def _create(self, spec: SubscriptionSpec) -> TriggerDispatcher:
        s, eventing = self._system, self._system.eventing
        return SubscriptionDispatcher(spec, self._log_of(spec), eventing.sender, eventing.ingress.publish,
                                      s.clock, eventing.metrics, local=s.publish_local)

    def _log_of(self, spec: TriggerSpec) -> EventLog:
        return self._system.channels.log_for(getattr(spec, "channel_plural", ""))

    def _same_run(self, old: TriggerSpec, new: SubscriptionSpec) -> bool:
        return old.consumer == new.consumer and old.stream == new.stream

    def _drops_consumer(self, old: TriggerSpec, new: SubscriptionSpec) -> bool:
        return True  # a new stream or consumer: the old cursor is of no further use

    def _started(self, spec: SubscriptionSpec) -> None:
        log.info("%s/subscription/%s: %s -> %s", spec.namespace, spec.name, spec.stream, spec.subscriber or spec.reply)
