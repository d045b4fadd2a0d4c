"""Keeps each Revision's instances running and the router's endpoints in step with them.

One `RevisionSupervisor` per revision. The Revision reconciler calls `ensure(rev)` (the
`ensure_revision` hook) and gets back a `RuntimeReport` for the Revision's conditions; the
supervisor's status changes flow the other way, into the routing table (ready endpoints) and back
into the reconciler's queue. How many instances run is the autoscaler's call: `ensure` tracks each
revision with its resolved `autoscaling.knative.dev/*` settings, a request finding nothing ready
pokes it (`RevisionTarget.on_demand`), and each `ScaleResult` it produces is applied here — the
supervisor's scale, the router's queue mode — and shown in the Revision's status (`actualReplicas`,
`desiredReplicas`, `Active`). Revisions no route points at drain and stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from wisp.api.autoscaling import AutoscalingSpec, resolve
from wisp.autoscaler.loop import Autoscaler
from wisp.autoscaler.scaler import Mode, ScaleResult
from wisp.autoscaler.window import Stat
from wisp.build import ImageStore
from wisp.config import parse_duration
from wisp.controllers.base import REVISION, Context, Key, Obj
from wisp.controllers.instancespec import SpecError, build_spec, prefetch_image
from wisp.controllers.revision import RuntimeReport
from wisp.dataplane.table import RevisionTarget, RoutingTable
from wisp.runtime.base import Instance, InstanceSpec, RuntimeBackend
from wisp.runtime.function import Prewarming
from wisp.runtime.supervisor import RevisionSupervisor, SupervisorStatus

log = logging.getLogger("wisp.serving")
ROUTING_STATE = "serving.knative.dev/routingState"
RUNTIME_ANNOTATION = "wisp.dev/runtime"
QUEUED_MESSAGE = "Requests to the target are being buffered as resources are provisioned."


def reachable(rev: Obj) -> bool:
    """Whether a route may send the revision traffic (Knative's PA reachability)."""
    return (rev["metadata"].get("labels") or {}).get(ROUTING_STATE) != "reserve"


def configure_target(target: RevisionTarget, rev: Obj, default_timeout: float) -> None:
    """Copy the revision's request limits onto its gate in the router."""
    spec = rev.get("spec") or {}
    target.timeout_seconds = float(spec.get("timeoutSeconds") or default_timeout)
    target.response_start_timeout = float(spec.get("responseStartTimeoutSeconds") or 0)
    target.idle_timeout = float(spec.get("idleTimeoutSeconds") or 0)
    target.container_concurrency = int(spec.get("containerConcurrency") or 0)


@dataclass
class _Managed:
    supervisor: RevisionSupervisor
    digest: str
    last: SupervisorStatus
    applied: int | None = None  # the scale last handed to the supervisor
    shown: tuple[str, str, int | None] | None = None  # (Active status, reason, desired) last requeued for


class RevisionRuntime:
    """The bridge between Revision objects, the runtime backend, and the routing table."""

    def __init__(self, ctx: Context, table: RoutingTable, backend: RuntimeBackend, images: ImageStore,
                 requeue: Callable[[Key], None], *,
                 backends: Mapping[str, RuntimeBackend] | None = None) -> None:
        self.ctx = ctx
        self.table = table
        self.backend = backend
        # Other backends by name, for revisions whose template says `wisp.dev/runtime: NAME`.
        self.backends = dict(backends or {})
        self.images = images
        self._requeue = requeue
        self._managed: dict[str, _Managed] = {}
        self._refreshing: set[str] = set()
        self._refresh_again: set[str] = set()
        self._refresh_tasks: set[asyncio.Task[None]] = set()
        # Zygotes warmed for function revisions, released when the revision goes.
        self._warm: dict[str, tuple[Prewarming, asyncio.Task[bool]]] = {}
        self._lock = asyncio.Lock()
        self.autoscaler = Autoscaler(ctx.clock, self._stat, self._ready, self._apply,
                                     tick_interval=ctx.config.autoscaler.tick_interval)

    @staticmethod
    def key(ns: str, name: str) -> str:
        return f"{ns}/{name}"

    async def ensure(self, rev: Obj) -> RuntimeReport:
        """Start (or rescale) the revision's instances; report what is running."""
        ns, name = rev["metadata"]["namespace"], rev["metadata"]["name"]
        key = self.key(ns, name)
        async with self._lock:
            managed = self._managed.get(key)
            if managed is None:
                try:
                    managed = await self._start(rev, key)
                except SpecError as exc:
                    return RuntimeReport(failure_reason=exc.reason, failure_message=exc.message,
                                         active="False", active_reason="NoTraffic",
                                         active_message="The revision cannot start.")
        target = self.table.revision(key)
        configure_target(target, rev, self.ctx.config.defaults.revision_timeout_seconds)
        target.on_demand = self.autoscaler.demand
        self.autoscaler.start()  # here rather than in __init__: it needs the running loop
        new = self.autoscaler.track(key, self.autoscaling_spec(rev), reachable=reachable(rev),
                                    progress_deadline=self._progress_deadline(rev))
        # A new revision gets its initial scale now; a known one re-applies the last decision to
        # whatever changed (ready instances, reachability) without waiting for the next tick.
        await (self.autoscaler.evaluate(key) if new else self.autoscaler.refresh(key))
        return self._report(managed, self.autoscaler.last(key))

    def autoscaling_spec(self, rev: Obj) -> AutoscalingSpec:
        """The revision's effective autoscaling settings (annotations over config-autoscaler)."""
        annotations = rev["metadata"].get("annotations") or {}
        cc = int((rev.get("spec") or {}).get("containerConcurrency") or 0)
        return resolve(annotations, self.ctx.config, cc)

    # ---- autoscaler callbacks ------------------------------------------------------------------

    def _stat(self, key: str) -> Stat:
        return self.table.revision(key).sample_stat()

    def _ready(self, key: str) -> int:
        managed = self._managed.get(key)
        return managed.supervisor.status.ready if managed else 0

    async def _apply(self, key: str, result: ScaleResult) -> None:
        """Make a scaling result true: router queue mode, supervisor scale, Revision status."""
        managed = self._managed.get(key)
        if managed is None:
            return
        self.table.revision(key).activator_in_path = result.mode is Mode.PROXY
        if managed.applied != result.replicas:
            managed.applied = result.replicas
            try:
                await managed.supervisor.scale(result.replicas)
            except RuntimeError:  # closed meanwhile: the revision is being deleted
                return
        shown = (result.active.status, result.active.reason, result.desired_replicas)
        if shown != managed.shown:
            managed.shown = shown
            ns, _, name = key.partition("/")
            self._requeue((ns, name))

    async def _start(self, rev: Obj, key: str) -> _Managed:
        grace = self.ctx.config.deployment.termination_grace_period
        # Unpacking is slow I/O and runs in a thread; the store is only read on the loop's thread.
        await asyncio.to_thread(prefetch_image, self.images, rev)
        spec, digest = build_spec(self.ctx.store, self.images, rev, grace=grace)
        ns, name = rev["metadata"]["namespace"], rev["metadata"]["name"]
        holder: list[_Managed] = []

        def on_change(status: SupervisorStatus) -> None:
            self.table.revision(key).set_endpoints(list(status.ready_endpoints))
            if holder:
                before, holder[0].last = holder[0].last, status
                if (before.initial_scale_reached, before.failure, before.ready, before.actual) != (
                        status.initial_scale_reached, status.failure, status.ready, status.actual):
                    self._requeue((ns, name))

        supervisor = RevisionSupervisor(self.backend_for(rev), spec, self.ctx.clock,
                                        progress_deadline=self._progress_deadline(rev),
                                        on_change=on_change, drain=self._drainer(key))
        managed = _Managed(supervisor, digest, supervisor.status)
        holder.append(managed)
        self._managed[key] = managed
        self._prewarm(self.backend_for(rev), spec, key)
        return managed

    def _prewarm(self, backend: RuntimeBackend, spec: InstanceSpec, key: str) -> None:
        """Let the backend get ready ahead of need (the function runtime starts its zygote), so
        the first scale from zero only pays for a fork. In the background: ensure stays fast."""
        if not isinstance(backend, Prewarming):
            return
        task = asyncio.ensure_future(backend.prewarm(spec, owner=key))

        def report(t: asyncio.Task[bool]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s: prewarming failed: %s", key, t.exception(), extra={"revision": key})

        task.add_done_callback(report)
        self._warm[key] = (backend, task)

    async def _unwarm(self, key: str) -> None:
        warm = self._warm.pop(key, None)
        if warm is not None:
            backend, task = warm
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            backend.release(key)

    def backend_for(self, rev: Obj) -> RuntimeBackend:
        """The backend the revision asks for (annotation `wisp.dev/runtime`), else the default."""
        wanted = (rev["metadata"].get("annotations") or {}).get(RUNTIME_ANNOTATION, "")
        return self.backends.get(wanted, self.backend)

    def _progress_deadline(self, rev: Obj) -> float:
        value = (rev["metadata"].get("annotations") or {}).get("serving.knative.dev/progress-deadline")
        try:
            return parse_duration(value) if value else self.ctx.config.deployment.progress_deadline
        except ValueError:
            return self.ctx.config.deployment.progress_deadline

    def _drainer(self, key: str) -> Callable[[Instance], Awaitable[None]]:
        """Before SIGTERM: wait until the router has no request in flight on that instance."""

        async def drain(instance: Instance) -> None:
            target = self.table.revision(key)
            deadline = self.ctx.clock.monotonic() + max(1.0, target.timeout_seconds)
            while self.ctx.clock.monotonic() < deadline:
                if not target.in_flight(instance.endpoint):
                    return
                await asyncio.sleep(0.01)

        return drain

    def _report(self, managed: _Managed, result: ScaleResult | None) -> RuntimeReport:
        st = managed.supervisor.status
        failure = st.failure
        desired = st.desired
        if result is not None:
            active = (result.active.status, result.active.reason, result.active.message)
            if result.desired_replicas is not None:
                desired = result.desired_replicas
        elif st.ready > 0:
            active = ("True", "", "")
        else:
            active = ("Unknown", "Queued", QUEUED_MESSAGE)
        return RuntimeReport(
            initial_scale_reached=st.initial_scale_reached, actual_replicas=st.ready,
            desired_replicas=desired, failure_reason=failure.reason if failure else "",
            failure_message=failure.message if failure else "", image_digest=managed.digest,
            active=active[0], active_reason=active[1], active_message=active[2])

    async def forget(self, ns: str, name: str) -> None:
        """The Revision was deleted: stop routing to it, drain, and stop its instances."""
        key = self.key(ns, name)
        self.autoscaler.forget(key)
        async with self._lock:
            managed = self._managed.pop(key, None)
        if managed is not None:
            await managed.supervisor.close()
        await self._unwarm(key)
        self.table.remove_revision(key)

    def refresh_env_soon(self, ns: str) -> None:
        """Something instances read at start (a SinkBinding) changed in `ns`: roll what it affects.

        Coalesced per namespace, so a burst of status writes causes one pass.
        """
        if ns in self._refreshing:
            self._refresh_again.add(ns)
            return
        self._refreshing.add(ns)
        task = asyncio.get_running_loop().create_task(self._refresh_env(ns))
        self._refresh_tasks.add(task)
        task.add_done_callback(self._refresh_tasks.discard)

    async def _refresh_env(self, ns: str) -> None:
        try:
            while True:
                self._refresh_again.discard(ns)
                await self.refresh_env(ns)
                if ns not in self._refresh_again:
                    return
        finally:
            self._refreshing.discard(ns)

    async def refresh_env(self, ns: str) -> int:
        """Roll every running revision in `ns` whose instance environment is no longer current.

        Knative gets this by mutating the Deployment (a rolling update); here each supervisor
        replaces its instances one at a time, never dropping below the ready count. Returns how
        many revisions were rolled.
        """
        rolled = 0
        for key, managed in list(self._managed.items()):
            rev_ns, _, name = key.partition("/")
            rev = self.ctx.store.find(REVISION, rev_ns, name) if rev_ns == ns else None
            if rev is None or not managed.supervisor.instances:
                continue
            try:
                spec, _ = build_spec(self.ctx.store, self.images, rev,
                                     grace=self.ctx.config.deployment.termination_grace_period)
            except SpecError:
                continue
            if spec.env != managed.supervisor.spec.env:
                log.info("%s: environment changed; rolling its instances", key)
                await managed.supervisor.roll(spec)
                rolled += 1
        return rolled

    def instances(self, ns: str, name: str) -> list[Instance]:
        managed = self._managed.get(self.key(ns, name))
        return managed.supervisor.instances if managed else []

    async def close(self) -> None:
        for task in list(self._refresh_tasks):
            task.cancel()
        await asyncio.gather(*self._refresh_tasks, return_exceptions=True)
        await self.autoscaler.stop()
        async with self._lock:
            managed, self._managed = list(self._managed.values()), {}
        await asyncio.gather(*(m.supervisor.close() for m in managed), return_exceptions=True)
        await asyncio.gather(*(self._unwarm(k) for k in list(self._warm)), return_exceptions=True)
