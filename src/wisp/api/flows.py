"""Validation and defaulting of channels, Subscriptions, Sequence, Parallel and EventType (pure).

Follows knative/eventing `pkg/apis/{messaging,flows}/v1/*_validation.go` (spec §2.5-§2.7, §3.2):
a Subscription's `spec.channel` is required, same-namespace and immutable; `channelTemplate` is
immutable; every Destination must be well formed. wisp also rejects at create time the cycles
that would otherwise loop events forever: a Subscription whose subscriber or reply is its own
channel, and a Sequence or Parallel whose reply (or a step/branch) points back into itself.
"""

from __future__ import annotations

from typing import Any

from wisp.api.errors import FieldError
from wisp.api.fields import Errors, at, get_list, get_map, invalid, missing, require_map
from wisp.config import Config
from wisp.eventing.delivery import parse_destination, validate_delivery

__all__ = [
    "CHANNEL_TEMPLATE_KINDS",
    "default_channel",
    "default_flow",
    "default_subscription",
    "validate_channel",
    "validate_event_type",
    "validate_parallel",
    "validate_sequence",
    "validate_subscription",
]

MESSAGING = "messaging.knative.dev/v1"
CHANNEL_TEMPLATE_KINDS = ("Channel", "InMemoryChannel")


def _namespace(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _default_ref_namespaces(dest: Any, namespace: str) -> None:
    ref = dest.get("ref") if isinstance(dest, dict) else None
    if isinstance(ref, dict) and not ref.get("namespace"):
        ref["namespace"] = namespace


def _destination(raw: Any, path: str, errs: Errors, *, required: bool = False) -> Any:
    if raw is None:
        if required:
            errs.append(missing(path))
        return None
    return parse_destination(raw, path, errs)


def _immutable(old: Any, new: Any, path: str, errs: Errors) -> None:
    if old != new:
        errs.append(FieldError(path, f"Immutable fields changed (-old +new): -{old} +{new}", "FieldValueInvalid"))


def _is_ref_to(dest: Any, kinds: tuple[str, ...], names: set[str], namespace: str) -> bool:
    ref = dest.get("ref") if isinstance(dest, dict) else None
    return (isinstance(ref, dict) and ref.get("kind") in kinds and ref.get("name") in names
            and ref.get("namespace") in (None, "", namespace))


# -- channels --------------------------------------------------------------------------------------

def default_channel(obj: dict[str, Any], config: Config) -> None:
    if obj.get("spec") is None:
        obj["spec"] = {}


def validate_channel(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = get_map(obj, "spec", "spec", errs) or {}
    errs.extend(validate_delivery(get_map(spec, "delivery", "spec.delivery", errs)))
    tmpl = get_map(spec, "channelTemplate", "spec.channelTemplate", errs)
    if tmpl is not None:
        _validate_template(tmpl, "spec.channelTemplate", errs)
    if old is not None:
        _immutable((old.get("spec") or {}).get("channelTemplate"), spec.get("channelTemplate"),
                   "spec.channelTemplate", errs)


def _validate_template(tmpl: dict[str, Any], path: str, errs: Errors) -> None:
    kind = tmpl.get("kind")
    if kind not in CHANNEL_TEMPLATE_KINDS:
        errs.append(invalid(kind, at(path, "kind"), f"expected one of {', '.join(CHANNEL_TEMPLATE_KINDS)}"))
    if tmpl.get("apiVersion") not in (None, MESSAGING):
        errs.append(invalid(tmpl.get("apiVersion"), at(path, "apiVersion"), f"expected {MESSAGING}"))


# -- Subscription ----------------------------------------------------------------------------------

def default_subscription(obj: dict[str, Any], config: Config) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    ns = _namespace(obj)
    for field in ("subscriber", "reply"):
        _default_ref_namespaces(spec.get(field), ns)


def validate_subscription(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    ns = _namespace(obj)
    channel = get_map(spec, "channel", "spec.channel", errs)
    if channel is None:
        errs.append(missing("spec.channel"))
    else:
        _validate_channel_ref(channel, ns, errs)
    subscriber = _destination(spec.get("subscriber"), "spec.subscriber", errs)
    reply = _destination(spec.get("reply"), "spec.reply", errs)
    if subscriber is None and reply is None:
        errs.append(missing("spec.subscriber", "a Subscription needs a subscriber (or at least a reply)"))
    errs.extend(validate_delivery(get_map(spec, "delivery", "spec.delivery", errs)))
    if channel is not None:
        kind, name = channel.get("kind"), {channel.get("name")}
        for field in ("subscriber", "reply"):
            if _is_ref_to(spec.get(field), (str(kind),), {str(n) for n in name}, ns):
                errs.append(invalid(channel.get("name"), f"spec.{field}.ref",
                                    "a Subscription must not deliver to its own channel (events would loop)"))
    if old is not None:
        _immutable((old.get("spec") or {}).get("channel"), spec.get("channel"), "spec.channel", errs)


def _validate_channel_ref(ref: dict[str, Any], namespace: str, errs: Errors) -> None:
    for key in ("apiVersion", "kind", "name"):
        if not ref.get(key):
            errs.append(missing(at("spec.channel", key)))
    if ref.get("kind") and ref.get("kind") not in CHANNEL_TEMPLATE_KINDS:
        errs.append(invalid(ref.get("kind"), "spec.channel.kind",
                            f"expected one of {', '.join(CHANNEL_TEMPLATE_KINDS)}"))
    if ref.get("namespace") not in (None, "", namespace):
        errs.append(invalid(ref.get("namespace"), "spec.channel.namespace", "must be the Subscription's namespace"))


# -- Sequence and Parallel -------------------------------------------------------------------------

def default_flow(obj: dict[str, Any], config: Config) -> None:
    """Default Destination ref namespaces to the flow's own.

    An absent `channelTemplate` is left absent (the reconciler uses the durable `Channel`), so the
    stored object stays what the user wrote.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    ns = _namespace(obj)
    _default_ref_namespaces(spec.get("reply"), ns)
    for step in spec.get("steps") or []:
        _default_ref_namespaces(step, ns)
    for branch in spec.get("branches") or []:
        if isinstance(branch, dict):
            for field in ("filter", "subscriber", "reply"):
                _default_ref_namespaces(branch.get(field), ns)


def _validate_flow_common(obj: dict[str, Any], old: dict[str, Any] | None, spec: dict[str, Any],
                          own_channels: set[str], errs: Errors) -> None:
    tmpl = get_map(spec, "channelTemplate", "spec.channelTemplate", errs)
    if tmpl is not None:
        _validate_template(tmpl, "spec.channelTemplate", errs)
    reply = _destination(spec.get("reply"), "spec.reply", errs)
    ns, kind = _namespace(obj), str(obj.get("kind", ""))
    if reply is not None and (_is_ref_to(spec.get("reply"), CHANNEL_TEMPLATE_KINDS, own_channels, ns)
                              or _is_ref_to(spec.get("reply"), (kind,), {_name(obj)}, ns)):
        errs.append(invalid(spec["reply"]["ref"].get("name"), "spec.reply.ref",
                            f"the reply of a {kind} must not be the {kind} itself or one of its channels "
                            "(events would loop forever)"))
    if old is not None:
        _immutable((old.get("spec") or {}).get("channelTemplate"), spec.get("channelTemplate"),
                   "spec.channelTemplate", errs)


def _self_reference(obj: dict[str, Any], dest: Any, own_channels: set[str], path: str, errs: Errors) -> None:
    ns, kind = _namespace(obj), str(obj.get("kind", ""))
    if _is_ref_to(dest, CHANNEL_TEMPLATE_KINDS, own_channels, ns) or _is_ref_to(dest, (kind,), {_name(obj)}, ns):
        errs.append(invalid(dest["ref"].get("name"), f"{path}.ref", f"must not point back into this {kind}"))


def validate_sequence(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    steps = get_list(spec, "steps", "spec.steps", errs)
    if not steps:
        errs.append(missing("spec.steps", "a Sequence needs at least one step"))
        steps = []
    name = _name(obj)
    own = {f"{name}-kn-sequence-{i}" for i in range(len(steps) + 1)}
    for i, step in enumerate(steps):
        path = at("spec.steps", i)
        _destination(step, path, errs, required=True)
        if isinstance(step, dict):
            errs.extend(validate_delivery(get_map(step, "delivery", f"{path}.delivery", errs),
                                          path=f"{path}.delivery"))
            _self_reference(obj, step, own, path, errs)
    _validate_flow_common(obj, old, spec, own, errs)


def validate_parallel(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    branches = get_list(spec, "branches", "spec.branches", errs)
    if not branches:
        errs.append(missing("spec.branches", "a Parallel needs at least one branch"))
        branches = []
    name = _name(obj)
    own = {f"{name}-kn-parallel"} | {f"{name}-kn-parallel-{i}" for i in range(len(branches))}
    for i, branch in enumerate(branches):
        path = at("spec.branches", i)
        if not isinstance(branch, dict):
            errs.append(invalid(branch, path, "expected an object"))
            continue
        _destination(branch.get("subscriber"), f"{path}.subscriber", errs, required=True)
        for field in ("filter", "reply"):
            _destination(branch.get(field), f"{path}.{field}", errs)
        for field in ("filter", "subscriber", "reply"):
            _self_reference(obj, branch.get(field), own, f"{path}.{field}", errs)
        errs.extend(validate_delivery(get_map(branch, "delivery", f"{path}.delivery", errs),
                                      path=f"{path}.delivery"))
    _validate_flow_common(obj, old, spec, own, errs)


# -- EventType -------------------------------------------------------------------------------------

def validate_event_type(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = get_map(obj, "spec", "spec", errs) or {}
    ref = get_map(spec, "reference", "spec.reference", errs)
    if ref is not None:
        ref_errs: Errors = []
        parse_destination({"ref": ref}, "spec", ref_errs)
        errs.extend(FieldError(e.field.replace("spec.ref", "spec.reference"), e.message, e.reason) for e in ref_errs)
    attrs = get_list(spec, "attributes", "spec.attributes", errs) or []
    names = set()
    for i, attr in enumerate(attrs):
        path = at("spec.attributes", i)
        if not isinstance(attr, dict) or not attr.get("name"):
            errs.append(missing(at(path, "name")))
            continue
        if attr["name"] in names:
            errs.append(invalid(attr["name"], at(path, "name"), "duplicate attribute"))
        names.add(attr["name"])
        if attr.get("required") and not attr.get("value") and attr["name"] in ("type", "source"):
            errs.append(missing(at(path, "value")))
    if attrs and "type" not in names:
        errs.append(missing("spec.attributes", "an EventType must describe the `type` attribute"))
