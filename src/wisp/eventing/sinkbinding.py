"""SinkBinding: tell a Service's instances where to send events (`K_SINK`, `K_CE_OVERRIDES`).

The reconciler (in `messaging.py`) resolves `spec.sink` into `status.sinkUri`. The runtime side
is `binding_env`, which `wisp.controllers.instancespec.build_spec` calls when it builds an
instance's environment: every SinkBinding in the namespace whose subject is the instance's
Knative Service (by name, or by label selector on the Service) contributes its variables.

Knative rolls a new revision when a binding changes the pod spec. wisp injects at instance
start instead, so **instances that are already running keep their old environment** until they
restart (scale from zero, crash, or a Service update); documented in `docs/eventing.md`.
"""

from __future__ import annotations

from typing import Any

from wisp.api import kinds
from wisp.store import Store

__all__ = ["K_CE_OVERRIDES", "K_SINK", "SINKBINDING", "binding_env", "subject_matches"]

SINKBINDING = kinds.lookup("sinkbindings")
KSVC = kinds.lookup("ksvc")
K_SINK = "K_SINK"
K_CE_OVERRIDES = "K_CE_OVERRIDES"


def subject_matches(binding: dict[str, Any], api_version: str, kind: str, obj: dict[str, Any]) -> bool:
    """Whether `obj` (of `api_version`/`kind`) is the binding's subject (pure)."""
    from wisp.eventing.apiserversource import selector_matches

    subject = (binding.get("spec") or {}).get("subject") or {}
    if subject.get("apiVersion") != api_version or subject.get("kind") != kind:
        return False
    meta = obj.get("metadata") or {}
    if subject.get("name"):
        return bool(subject["name"] == meta.get("name"))
    return bool(subject.get("selector")) and selector_matches(subject["selector"], meta.get("labels") or {})


def overrides_json(binding: dict[str, Any]) -> str:
    import json

    overrides = (binding.get("spec") or {}).get("ceOverrides")
    return json.dumps(overrides, separators=(",", ":"), sort_keys=True) if overrides else ""


def binding_env(store: Store, namespace: str, service: str) -> dict[str, str]:
    """`K_SINK` / `K_CE_OVERRIDES` for instances of Knative Service `service` ({} when unbound)."""
    if not service:
        return {}
    bindings = store.list(SINKBINDING, namespace)
    if not bindings:
        return {}
    svc = store.find(KSVC, namespace, service)
    if svc is None:
        return {}
    for binding in sorted(bindings, key=lambda b: b["metadata"]["name"]):
        sink = (binding.get("status") or {}).get("sinkUri")
        if sink and subject_matches(binding, KSVC.api_version, KSVC.kind, svc):
            env = {K_SINK: str(sink)}
            overrides = overrides_json(binding)
            if overrides:
                env[K_CE_OVERRIDES] = overrides
            return env
    return {}
