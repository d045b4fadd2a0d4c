"""Broker and Trigger status: what each object should report, computed from the store.

Level-based and side-effect free apart from reading the store: `broker_status` and
`plan_trigger` return an updated copy of the object plus (for a Trigger) the resolved
`TriggerSpec` a dispatcher needs. `EventingSystem` applies the plan (starts or stops the
dispatcher) and writes the status. Conditions follow Knative (spec §3.2): a Trigger is Ready
only once its Broker is Ready, its subscriber and dead-letter sink resolved, and its dispatcher
is consuming (`SubscriptionReady`, set by the system).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wisp.api import kinds
from wisp.api.errors import FieldError
from wisp.api.eventing import delivery_order, max_in_flight
from wisp.api.meta import ConditionSet
from wisp.controllers.base import Context, Obj, working_copy
from wisp.eventing.delivery import (
    DeliveryPolicy,
    Destination,
    InvalidDelivery,
    effective_delivery,
    parse_delivery,
    parse_destination,
)
from wisp.eventing.destinations import UnresolvedDestination, resolve_destination
from wisp.eventing.dispatch import DEFAULT_MAX_IN_FLIGHT, TriggerSpec
from wisp.eventing.filters import compile_trigger_filter

__all__ = [
    "BROKER",
    "BROKER_CONDITIONS",
    "TRIGGER",
    "TRIGGER_CONDITIONS",
    "TriggerPlan",
    "broker_address",
    "broker_status",
    "dependencies",
    "ingress_host",
    "plan_trigger",
]

BROKER = kinds.lookup("brokers")
TRIGGER = kinds.lookup("triggers")
KSVC = kinds.lookup("ksvc")

BROKER_CONDITIONS = ConditionSet("Ready", ("IngressReady", "Addressable", "DeadLetterSinkResolved"))
TRIGGER_CONDITIONS = ConditionSet("Ready", ("BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved",
                                            "SubscriptionReady"))


def ingress_host(domain: str) -> str:
    """The Host the broker ingress is served on."""
    return f"broker-ingress.{domain}"


def broker_address(ctx: Context, namespace: str, name: str) -> str:
    """A Broker's `status.address.url`."""
    return f"{ctx.urls.url(ingress_host(ctx.config.network.domain))}/{namespace}/{name}"


def _delivery(spec: dict[str, Any]) -> DeliveryPolicy | None:
    raw = spec.get("delivery")
    try:
        return parse_delivery(raw if isinstance(raw, dict) else None)
    except InvalidDelivery:  # admission rejects these; stay safe for objects stored before it did
        return None


def _resolve_dls(ctx: Context, obj: Obj, policy: DeliveryPolicy | None, conditions: ConditionSet) -> str | None:
    """Resolve the dead-letter sink into `status.deadLetterSinkUri` and its condition."""
    ns = obj["metadata"]["namespace"]
    now = ctx.now()
    status = obj.setdefault("status", {})
    sink = policy.dead_letter_sink if policy is not None else None
    if sink is None:
        status.pop("deadLetterSinkUri", None)
        conditions.mark_true(obj, "DeadLetterSinkResolved", now)
        return None
    try:
        uri = resolve_destination(ctx.store, ns, sink)
    except UnresolvedDestination as e:
        status["deadLetterSinkUri"] = ""
        conditions.mark_false(obj, "DeadLetterSinkResolved", "Unable to get the dead letter sink's URI",
                              f"{e.reason}: {e.message}", now)
        return None
    status["deadLetterSinkUri"] = uri
    conditions.mark_true(obj, "DeadLetterSinkResolved", now)
    return uri


def broker_status(ctx: Context, broker: Obj) -> Obj:
    """The Broker with its status recomputed: address, dead-letter sink, conditions."""
    out = working_copy(broker)
    meta = out["metadata"]
    now = ctx.now()
    status = out.setdefault("status", {})
    BROKER_CONDITIONS.initialize(out, now)
    status["address"] = {"url": broker_address(ctx, meta["namespace"], meta["name"])}
    BROKER_CONDITIONS.mark_true(out, "IngressReady", now)
    BROKER_CONDITIONS.mark_true(out, "Addressable", now)
    _resolve_dls(ctx, out, _delivery(out.get("spec") or {}), BROKER_CONDITIONS)
    status["observedGeneration"] = meta.get("generation", 1)
    return out


@dataclass
class TriggerPlan:
    """The Trigger with status filled in, and the dispatcher spec when it can deliver."""

    trigger: Obj
    spec: TriggerSpec | None


def plan_trigger(ctx: Context, trigger: Obj) -> TriggerPlan:
    """Resolve broker, subscriber, delivery and filter; `spec` is None when not deliverable."""
    out = working_copy(trigger)
    meta, spec = out["metadata"], out.get("spec") or {}
    ns, now = meta["namespace"], ctx.now()
    status = out.setdefault("status", {})
    status["observedGeneration"] = meta.get("generation", 1)
    TRIGGER_CONDITIONS.initialize(out, now)
    broker_name = str(spec.get("broker") or "default")
    broker = ctx.store.find(BROKER, ns, broker_name)
    broker_ok = broker is not None and BROKER_CONDITIONS.is_happy(broker)
    if broker_ok:
        TRIGGER_CONDITIONS.mark_true(out, "BrokerReady", now)
    else:
        reason = "BrokerDoesNotExist" if broker is None else "BrokerNotReady"
        TRIGGER_CONDITIONS.mark_false(out, "BrokerReady", reason, f"Broker {broker_name!r} is not ready", now)
    subscriber = _resolve_subscriber(ctx, out, spec, now)
    policy = effective_delivery(_delivery(spec), _delivery((broker or {}).get("spec") or {}))
    dls = _resolve_dls(ctx, out, policy, TRIGGER_CONDITIONS)
    matcher = _matcher(out, spec, now)
    if not (broker_ok and subscriber and matcher is not None) or \
            (policy.dead_letter_sink is not None and dls is None):
        return TriggerPlan(out, None)
    assert broker is not None and matcher is not None
    return TriggerPlan(out, TriggerSpec(
        namespace=ns, name=meta["name"], broker=broker_name, uid=str(meta.get("uid") or meta["name"]),
        subscriber=subscriber, matcher=matcher, policy=policy, dead_letter_uri=dls,
        max_in_flight=max_in_flight(out, DEFAULT_MAX_IN_FLIGHT), ordered=delivery_order(out),
        broker_url=((broker.get("status") or {}).get("address") or {}).get("url", "")))


def _resolve_subscriber(ctx: Context, out: Obj, spec: dict[str, Any], now: float) -> str | None:
    errors: list[FieldError] = []
    dest = parse_destination(spec.get("subscriber"), "spec.subscriber", errors)
    status = out["status"]
    try:
        if dest is None or errors:
            raise UnresolvedDestination("Invalid", "; ".join(e.render() for e in errors) or "no subscriber")
        uri = resolve_destination(ctx.store, out["metadata"]["namespace"], dest)
    except UnresolvedDestination as e:
        status["subscriberUri"] = ""
        TRIGGER_CONDITIONS.mark_false(out, "SubscriberResolved", "Unable to get the Subscriber's URI",
                                      f"{e.reason}: {e.message}", now)
        return None
    status["subscriberUri"] = uri
    TRIGGER_CONDITIONS.mark_true(out, "SubscriberResolved", now)
    return uri


def _matcher(out: Obj, spec: dict[str, Any], now: float) -> Any:
    flt = spec.get("filter") or {}
    try:
        return compile_trigger_filter(flt.get("attributes") if isinstance(flt, dict) else None,
                                      spec.get("filters"))
    except Exception as e:  # a filter that slipped past admission: report it instead of crashing
        TRIGGER_CONDITIONS.mark_false(out, "SubscriptionReady", "InvalidFilter", str(e), now)
        return None


def _destinations(obj: Obj) -> list[Destination | None]:
    spec = obj.get("spec") or {}
    out: list[Destination | None] = []
    for raw in (spec.get("subscriber"), ((spec.get("delivery") or {}).get("deadLetterSink"))):
        out.append(parse_destination(raw, "", []) if isinstance(raw, dict) else None)
    return out


def dependencies(obj: Obj) -> set[tuple[str, str, str]]:
    """(kind key, namespace, name) of every object a Broker or Trigger status depends on."""
    ns = obj["metadata"]["namespace"]
    deps: set[tuple[str, str, str]] = set()
    if obj.get("kind") == "Trigger":
        deps.add((BROKER.key, ns, str((obj.get("spec") or {}).get("broker") or "default")))
    for dest in _destinations(obj):
        if dest is not None and dest.ref is not None:
            try:
                kind = kinds.by_api_version(dest.ref.api_version, dest.ref.kind)
            except Exception:
                continue
            deps.add((kind.key, dest.ref.namespace or ns, dest.ref.name))
    return deps
