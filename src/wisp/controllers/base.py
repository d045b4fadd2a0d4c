"""What every reconciler shares: the store, config, clock, URL maker, and a status writer."""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from wisp.api import kinds
from wisp.api.kinds import Kind
from wisp.api.meta import controller_of, owner_reference
from wisp.clock import Clock
from wisp.config import Config
from wisp.controllers.urls import URLMaker
from wisp.store import Store

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

SERVICE = kinds.lookup("ksvc")
CONFIGURATION = kinds.lookup("configurations")
REVISION = kinds.lookup("revisions")
ROUTE = kinds.lookup("routes")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass
class Context:
    """Shared by the reconcilers of one `wisp serve`."""

    store: Store
    config: Config
    clock: Clock
    urls: URLMaker
    # Hooks the data plane and runtime register (issue-3 pieces); all optional.
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def now(self) -> float:
        return self.clock.now()


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def owner_key(obj: Obj, owner_kind: Kind) -> Key | None:
    """The (namespace, name) of the controlling owner when it is of `owner_kind`."""
    ref = controller_of(obj)
    if ref and ref.get("kind") == owner_kind.kind and ref.get("apiVersion") == owner_kind.api_version:
        return obj["metadata"].get("namespace", ""), ref["name"]
    return None


def is_owned_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return bool(ref and ref.get("uid") == owner["metadata"].get("uid"))


def child_meta(owner: Obj, name: str, extra_labels: dict[str, str]) -> Obj:
    """Metadata for an object a Service owns: the owner's labels and annotations plus `extra_labels`."""
    meta = owner["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    return {
        "name": name,
        "namespace": meta.get("namespace", "default"),
        "labels": {**(meta.get("labels") or {}), **extra_labels},
        "annotations": annotations,
        "ownerReferences": [owner_reference(owner)],
    }


def write_status(ctx: Context, kind: Kind, original: Obj, updated: Obj) -> Obj:
    """Persist `updated.status` if it differs from what `original` had."""
    if original.get("status") == updated.get("status"):
        return original
    return ctx.store.update_status(kind, updated)


def working_copy(obj: Obj) -> Obj:
    return copy.deepcopy(obj)


Enqueue = Callable[[Hashable], None]
