"""Validation and defaulting of `eventing.knative.dev/v1` Broker and Trigger (pure).

Follows knative/eventing `pkg/apis/eventing/v1/{broker,trigger}_{defaults,validation}.go` and the
conformance rules of spec §3.2-3.3: the broker class and `spec.config` are immutable, a Trigger's
`spec.broker` is immutable, an empty filter is the default, and a subscriber `ref` defaults to
the Trigger's namespace (and must stay in it).

wisp adds two Trigger annotations for the dispatcher (Knative brokers express these per
implementation, e.g. `kafka.eventing.knative.dev/delivery.order`, which is accepted too):
`wisp.dev/delivery.order: ordered|unordered` and `wisp.dev/max-in-flight: N`.
"""

from __future__ import annotations

from typing import Any

from wisp.api.errors import FieldError
from wisp.api.fields import Errors, at, get_map, get_str, invalid, missing, require_map
from wisp.api.meta import is_dns1123_subdomain
from wisp.config import Config
from wisp.eventing.delivery import parse_destination, validate_delivery
from wisp.eventing.filters import validate_filter_attributes, validate_filters

__all__ = [
    "BROKER_CLASS_ANNOTATION",
    "DEFAULT_BROKER_CLASS",
    "MAX_IN_FLIGHT_ANNOTATION",
    "ORDER_ANNOTATIONS",
    "default_broker",
    "default_trigger",
    "delivery_order",
    "max_in_flight",
    "validate_broker",
    "validate_trigger",
]

BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
DEFAULT_BROKER_CLASS = "MTChannelBasedBroker"
ORDER_ANNOTATIONS = ("wisp.dev/delivery.order", "kafka.eventing.knative.dev/delivery.order")
MAX_IN_FLIGHT_ANNOTATION = "wisp.dev/max-in-flight"
MAX_IN_FLIGHT_LIMIT = 10_000


def _annotations(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {}
    ann = meta.get("annotations")
    return ann if isinstance(ann, dict) else {}


# -- Broker ----------------------------------------------------------------------------------------

def default_broker(obj: dict[str, Any], config: Config) -> None:
    """Set the broker class annotation when absent (Knative's cluster default class)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        if meta.get("annotations") is None:
            meta["annotations"] = {}
        if isinstance(meta["annotations"], dict):
            meta["annotations"].setdefault(BROKER_CLASS_ANNOTATION, DEFAULT_BROKER_CLASS)
    if obj.get("spec") is None:
        obj["spec"] = {}


def validate_broker(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = get_map(obj, "spec", "spec", errs) or {}
    cfg = spec.get("config")
    if cfg is not None:
        ref_errors: Errors = []
        parse_destination({"ref": cfg}, "spec", ref_errors)
        errs.extend(FieldError(e.field.replace("spec.ref", "spec.config"), e.message, e.reason)
                    for e in ref_errors)
    errs.extend(validate_delivery(get_map(spec, "delivery", "spec.delivery", errs)))
    if old is not None:
        _immutable(_annotations(old).get(BROKER_CLASS_ANNOTATION), _annotations(obj).get(BROKER_CLASS_ANNOTATION),
                   f"metadata.annotations[{BROKER_CLASS_ANNOTATION}]", errs)
        _immutable((old.get("spec") or {}).get("config"), cfg, "spec.config", errs)


def _immutable(before: Any, after: Any, path: str, errs: Errors) -> None:
    if before != after:
        errs.append(FieldError(path, f"Immutable fields changed (-old +new): -{before} +{after}",
                               "FieldValueInvalid"))


# -- Trigger ---------------------------------------------------------------------------------------

def default_trigger(obj: dict[str, Any], config: Config) -> None:
    """Broker `default`, an empty filter, and the subscriber ref's namespace set to our own."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("broker"):
        spec["broker"] = "default"
    if spec.get("filter") is None and not spec.get("filters"):
        spec["filter"] = {}
    namespace = (obj.get("metadata") or {}).get("namespace") or "default"
    subscriber = spec.get("subscriber")
    ref = subscriber.get("ref") if isinstance(subscriber, dict) else None
    if isinstance(ref, dict) and not ref.get("namespace"):
        ref["namespace"] = namespace


def validate_trigger(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    broker = get_str(spec, "broker", "spec.broker", errs)
    if not broker:
        errs.append(missing("spec.broker"))
    elif not is_dns1123_subdomain(broker):
        errs.append(invalid(broker, "spec.broker", "must be a DNS-1123 subdomain"))
    _validate_subscriber(obj, spec, errs)
    errs.extend(validate_delivery(get_map(spec, "delivery", "spec.delivery", errs)))
    flt = get_map(spec, "filter", "spec.filter", errs) or {}
    attrs = get_map(flt, "attributes", "spec.filter.attributes", errs)
    errs.extend(validate_filter_attributes(attrs, "spec.filter"))
    errs.extend(validate_filters(spec.get("filters"), "spec.filters"))
    _validate_dispatch_annotations(_annotations(obj), errs)
    if old is not None:
        _immutable((old.get("spec") or {}).get("broker"), broker, "spec.broker", errs)


def _validate_subscriber(obj: dict[str, Any], spec: dict[str, Any], errs: Errors) -> None:
    subscriber = spec.get("subscriber")
    if subscriber is None:
        errs.append(missing("spec.subscriber"))
        return
    parse_destination(subscriber, "spec.subscriber", errs)
    ref = subscriber.get("ref") if isinstance(subscriber, dict) else None
    namespace = (obj.get("metadata") or {}).get("namespace")
    if isinstance(ref, dict) and namespace and ref.get("namespace") not in (None, "", namespace):
        errs.append(invalid(ref.get("namespace"), at("spec.subscriber.ref", "namespace"),
                            "must be the Trigger's namespace"))


def _validate_dispatch_annotations(ann: dict[str, Any], errs: Errors) -> None:
    for name in ORDER_ANNOTATIONS:
        value = ann.get(name)
        if value is not None and value not in ("ordered", "unordered"):
            errs.append(invalid(value, f"metadata.annotations[{name}]", "expected ordered or unordered"))
    value = ann.get(MAX_IN_FLIGHT_ANNOTATION)
    if value is not None and _positive_int(value) is None:
        errs.append(invalid(value, f"metadata.annotations[{MAX_IN_FLIGHT_ANNOTATION}]",
                            f"expected an integer between 1 and {MAX_IN_FLIGHT_LIMIT}"))


def _positive_int(value: Any) -> int | None:
    try:
        n = int(str(value))
    except ValueError:
        return None
    return n if 1 <= n <= MAX_IN_FLIGHT_LIMIT else None


def delivery_order(obj: dict[str, Any]) -> bool:
    """True when the Trigger asks for ordered (one-at-a-time, in log order) delivery."""
    ann = _annotations(obj)
    return any(ann.get(name) == "ordered" for name in ORDER_ANNOTATIONS)


def max_in_flight(obj: dict[str, Any], default: int) -> int:
    """Concurrent deliveries allowed for a Trigger: 1 when ordered, else the annotation or `default`."""
    if delivery_order(obj):
        return 1
    return _positive_int(_annotations(obj).get(MAX_IN_FLIGHT_ANNOTATION)) or default
