"""Keeps each Revision's instances running and the router's endpoints in step with them.

One `RevisionSupervisor` per revision. The Revision reconciler calls `ensure(rev)` (the
`ensure_revision` hook) and gets back a `RuntimeReport` for the Revision's conditions; the
supervisor's status changes flow the other way, into the routing table (ready endpoints) and back
into the reconciler's queue. Scale here is what serving needs without the autoscaler: routed and
pending revisions run their initial scale; revisions no route points at drain and stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from wisp.build import ImageStore
from wisp.controllers.base import Context, Key, Obj
from wisp.controllers.instancespec import SpecError, build_spec
from wisp.controllers.revision import RuntimeReport
from wisp.dataplane.table import RoutingTable
from wisp.runtime.base import Instance, RuntimeBackend
from wisp.runtime.supervisor import RevisionSupervisor, SupervisorStatus

log = logging.getLogger("wisp.serving")
ROUTING_STATE = "serving.knative.dev/routingState"
MIN_SCALE_KEYS = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/minScale")
RUNTIME_ANNOTATION = "wisp.dev/runtime"
INITIAL_SCALE_KEYS = ("autoscaling.knative.dev/initial-scale", "autoscaling.knative.dev/initialScale")


def _annotation_int(rev: Obj, keys: tuple[str, ...], default: int) -> int:
    annotations = rev["metadata"].get("annotations") or {}
    for key in keys:
        if key in annotations:
            try:
                return int(annotations[key])
            except ValueError:
                return default
    return default


def desired_scale(rev: Obj, default_initial: int) -> int:
    """Instances a revision should run while no autoscaler drives it."""
    if (rev["metadata"].get("labels") or {}).get(ROUTING_STATE) == "reserve":
        return 0
    min_scale = _annotation_int(rev, MIN_SCALE_KEYS, 0)
    initial = _annotation_int(rev, INITIAL_SCALE_KEYS, default_initial)
    return max(1, min_scale, initial)


@dataclass
class _Managed:
    supervisor: RevisionSupervisor
    digest: str
    last: SupervisorStatus


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
        self._failed: dict[str, SpecError] = {}
        self._lock = asyncio.Lock()

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
        target.timeout_seconds = float((rev.get("spec") or {}).get("timeoutSeconds")
                                       or self.ctx.config.defaults.revision_timeout_seconds)
        await managed.supervisor.scale(desired_scale(rev, self.ctx.config.autoscaler.initial_scale))
        return self._report(managed)

    async def _start(self, rev: Obj, key: str) -> _Managed:
        grace = self.ctx.config.deployment.termination_grace_period
        spec, digest = await asyncio.to_thread(build_spec, self.ctx.store, self.images, rev, grace=grace)
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
        return managed

    def backend_for(self, rev: Obj) -> RuntimeBackend:
        """The backend the revision asks for (annotation `wisp.dev/runtime`), else the default."""
        wanted = (rev["metadata"].get("annotations") or {}).get(RUNTIME_ANNOTATION, "")
        return self.backends.get(wanted, self.backend)

    def _progress_deadline(self, rev: Obj) -> float:
        from wisp.config import parse_duration

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

    def _report(self, managed: _Managed) -> RuntimeReport:
        st = managed.supervisor.status
        failure = st.failure
        if st.actual > 0 or st.ready > 0:
            active = ("True", "", "")
        elif st.desired == 0:
            active = ("False", "NoTraffic", "The target is not receiving traffic.")
        else:
            active = ("Unknown", "Queued", "Requests to the target are being buffered as resources are "
                      "provisioned.")
        return RuntimeReport(
            initial_scale_reached=st.initial_scale_reached, actual_replicas=st.ready,
            desired_replicas=st.desired, failure_reason=failure.reason if failure else "",
            failure_message=failure.message if failure else "", image_digest=managed.digest,
            active=active[0], active_reason=active[1], active_message=active[2])

    async def forget(self, ns: str, name: str) -> None:
        """The Revision was deleted: stop routing to it, drain, and stop its instances."""
        key = self.key(ns, name)
        async with self._lock:
            managed = self._managed.pop(key, None)
        if managed is not None:
            await managed.supervisor.close()
        self.table.remove_revision(key)

    def instances(self, ns: str, name: str) -> list[Instance]:
        managed = self._managed.get(self.key(ns, name))
        return managed.supervisor.instances if managed else []

    async def close(self) -> None:
        async with self._lock:
            managed, self._managed = list(self._managed.values()), {}
        await asyncio.gather(*(m.supervisor.close() for m in managed), return_exceptions=True)
