"""ApiServerSource: CloudEvents for adds, updates and deletes of wisp resources (spec §2.8).

The store calls `ApiServerWatcher.on_change` synchronously after every committed write; the
watcher matches the change against each Ready source (namespace, `resources[]` apiVersion/kind
and label selector, optional `owner` filter), builds the event, and puts it on a **bounded**
queue. One sender task per watcher delivers in order with the source retry policy. When the
queue is full the event is dropped and logged: a slow sink must never stall the store.

Events, as Knative's adapter makes them:

* `Reference` mode (default): type `dev.knative.apiserver.ref.{add,update,delete}`, data
  `{"apiVersion","kind","name","namespace"}`.
* `Resource` mode: type `dev.knative.apiserver.resource.{add,update,delete}`, data = the object.
* source = the wisp API URL; subject = the object's path
  (`/apis/serving.knative.dev/v1/namespaces/default/services/hello`); extensions `apiversion`,
  `kind`, `name`, `namespace` (and `ceOverrides`).

Every status write is an update, as with Kubernetes informers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wisp.api import kinds
from wisp.api.errors import NotFound
from wisp.eventing.cloudevents import CloudEvent
from wisp.store.watch import WatchEvent

__all__ = ["ApiServerSpec", "ApiServerWatcher", "Resource", "api_event", "api_spec", "selector_matches"]

log = logging.getLogger("wisp.eventing.apiserversource")

_VERB = {"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}


@dataclass(frozen=True)
class Resource:
    """One `spec.resources[]` entry: a kind key and an optional label selector."""

    kind_key: str
    selector: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ApiServerSpec:
    namespace: str
    name: str
    resources: tuple[Resource, ...]
    sink: str
    mode: str = "Reference"
    owner: tuple[str, str] | None = None  # (apiVersion, kind)
    extensions: Mapping[str, str] = field(default_factory=dict)


def api_spec(obj: dict[str, Any], sink: str, extensions: Mapping[str, str]) -> ApiServerSpec:
    """The watcher spec of a (validated) ApiServerSource; unknown kinds are skipped."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    resources = []
    for res in spec.get("resources") or []:
        try:
            kind = kinds.by_api_version(str(res.get("apiVersion")), str(res.get("kind")))
        except NotFound:
            log.warning("%s/apiserversource/%s: %s %s is not served here; ignored", meta["namespace"],
                        meta["name"], res.get("apiVersion"), res.get("kind"))
            continue
        resources.append(Resource(kind.key, res.get("selector")))
    owner = spec.get("owner")
    return ApiServerSpec(meta["namespace"], meta["name"], tuple(resources), sink, spec.get("mode") or "Reference",
                         (str(owner.get("apiVersion")), str(owner.get("kind"))) if owner else None,
                         dict(extensions))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (`matchLabels` + `matchExpressions`) against labels."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _owned_by(obj: Mapping[str, Any], owner: tuple[str, str]) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("apiVersion") == owner[0] and r.get("kind") == owner[1] for r in refs)


def matches(spec: ApiServerSpec, event: WatchEvent) -> bool:
    if event.namespace != spec.namespace:
        return False
    labels = (event.object.get("metadata") or {}).get("labels") or {}
    if spec.owner is not None and not _owned_by(event.object, spec.owner):
        return False
    return any(r.kind_key == event.kind and selector_matches(r.selector, labels) for r in spec.resources)


def api_event(spec: ApiServerSpec, event: WatchEvent, source: str, now: float | None = None) -> CloudEvent:
    """The CloudEvent for one store change (pure apart from the random id)."""
    obj = event.object
    kind = kinds.lookup(event.kind)
    ref = {"apiVersion": obj.get("apiVersion", kind.api_version), "kind": obj.get("kind", kind.kind),
           "name": event.name, "namespace": event.namespace}
    group = "api" if not kind.group else f"apis/{kind.group}"
    subject = f"/{group}/{kind.version}/namespaces/{event.namespace}/{kind.plural}/{event.name}"
    verb = _VERB.get(event.type, "update")
    mode = "resource" if spec.mode == "Resource" else "ref"
    data = obj if mode == "resource" else ref
    extensions = {"apiversion": ref["apiVersion"], "kind": ref["kind"], "name": event.name,
                  "namespace": event.namespace, **spec.extensions}
    return CloudEvent.create(f"dev.knative.apiserver.{mode}.{verb}", source, data, subject=subject,
                             datacontenttype="application/json", extensions=extensions)


Emit = Callable[[str, CloudEvent, str], Awaitable[object]]


class ApiServerWatcher:
    """Matches store changes against sources and sends the events (see the module docstring)."""

    def __init__(self, source: str, emit: Emit, *, capacity: int = 10_000) -> None:
        self._source = source
        self._emit = emit
        self._specs: dict[tuple[str, str], ApiServerSpec] = {}
        self._queue: asyncio.Queue[tuple[ApiServerSpec, CloudEvent]] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def ensure(self, spec: ApiServerSpec) -> None:
        self._specs[(spec.namespace, spec.name)] = spec
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="apiserversource-sender")

    def remove(self, key: tuple[str, str]) -> None:
        self._specs.pop(key, None)

    def on_change(self, event: WatchEvent) -> None:
        for spec in list(self._specs.values()):
            if not matches(spec, event):
                continue
            try:
                self._queue.put_nowait((spec, api_event(spec, event, self._source)))
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("%s/apiserversource/%s: sender queue full; %s event for %s dropped",
                            spec.namespace, spec.name, event.type, event.name)

    async def _run(self) -> None:
        while True:
            spec, event = await self._queue.get()
            if (spec.namespace, spec.name) not in self._specs:
                continue  # the source was deleted or stopped meanwhile
            try:
                await self._emit(spec.sink, event, f"{spec.namespace}/apiserversource/{spec.name}")
            except Exception:
                log.exception("%s/apiserversource/%s: send failed", spec.namespace, spec.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
