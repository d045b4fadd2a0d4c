"""ContainerSource: run a user program that produces events, with `K_SINK` pointing at the sink.

Knative turns a ContainerSource into a Deployment plus a SinkBinding. wisp runs
`spec.template.spec.containers[0]` (command/args/env/workingDir, or an image from wisp's store)
as one long-running process through the runtime backend, supervised by a `RevisionSupervisor`:
a program that exits is restarted with exponential backoff (0.1 s doubling to 10 s). The process
gets `K_SINK` (the resolved sink) and `K_CE_OVERRIDES` (the ceOverrides JSON) besides its own env.

Such a program does not serve traffic, so it counts as deployed while its process runs (the
supervisor's TCP readiness probe, slowed to every 10 s, never matters, and its progress deadline
is effectively disabled); `status.sinkUri` and the `Deployed` condition report what is running,
and a crash loop shows up as `Deployed=False` with the program's last log lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wisp.build import ImageStore
from wisp.clock import Clock
from wisp.controllers.instancespec import SpecError, build_spec
from wisp.runtime.base import InstanceSpec, ProbeSpec, RuntimeBackend
from wisp.runtime.supervisor import RevisionSupervisor, SupervisorStatus
from wisp.store import Store

__all__ = ["ContainerSources", "container_instance_spec"]

log = logging.getLogger("wisp.eventing.containersource")

PROGRESS_DEADLINE = 10 * 365 * 86400.0
_READY_PROBE = ProbeSpec("tcp", period_seconds=10.0)


def container_instance_spec(store: Store, images: ImageStore | None, obj: dict[str, Any], sink: str,
                            overrides: str, grace: float = 5.0) -> InstanceSpec:
    """The InstanceSpec for a ContainerSource; raises `SpecError` when it cannot run."""
    meta = obj["metadata"]
    template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = template.get("containers") or [{}]
    rev = {"metadata": {"namespace": meta["namespace"], "name": f"{meta['name']}-containersource", "labels": {}},
           "spec": {"containers": containers[:1]}}
    if images is None and containers[0].get("image"):
        raise SpecError("ContainerMissing", "images are not available to this wisp")
    spec, _ = build_spec(store, images, rev, grace=grace)  # type: ignore[arg-type]
    env = {**spec.env, "K_SINK": sink}
    if overrides:
        env["K_CE_OVERRIDES"] = overrides
    return dataclasses.replace(spec, env=env, readiness=_READY_PROBE)


@dataclass
class _Running:
    spec: InstanceSpec
    supervisor: RevisionSupervisor


class ContainerSources:
    """One supervised process per ContainerSource key."""

    def __init__(self, backend: RuntimeBackend, clock: Clock, on_status: Callable[[tuple[str, str]], None]) -> None:
        self._backend = backend
        self._clock = clock
        self._on_status = on_status
        self._running: dict[tuple[str, str], _Running] = {}

    def status(self, key: tuple[str, str]) -> SupervisorStatus | None:
        running = self._running.get(key)
        return running.supervisor.status if running else None

    async def ensure(self, key: tuple[str, str], spec: InstanceSpec) -> None:
        """Run `spec` for `key`; a changed spec replaces the process."""
        current = self._running.get(key)
        if current is not None and current.spec == spec:
            return
        await self.remove(key)
        supervisor = RevisionSupervisor(self._backend, spec, self._clock, progress_deadline=PROGRESS_DEADLINE,
                                        on_change=lambda _status: self._on_status(key))
        self._running[key] = _Running(spec, supervisor)
        await supervisor.scale(1)
        log.info("%s/containersource/%s: running %s", key[0], key[1], spec.argv)

    async def remove(self, key: tuple[str, str]) -> None:
        running = self._running.pop(key, None)
        if running is not None:
            with contextlib.suppress(Exception):
                await running.supervisor.close(grace=running.spec.termination_grace)

    async def close(self) -> None:
        for key in list(self._running):
            await self.remove(key)
