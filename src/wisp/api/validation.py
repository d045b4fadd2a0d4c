"""The two entry points the API server calls on every write: defaulting, then validation.

Objects stay plain wire-form dicts so that fields wisp does not know about survive untouched.
Kinds without specific rules (eventing, sources, flows…) get only the shared metadata checks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from wisp.api import core, eventing, eventing_sources, flows, serving
from wisp.api.errors import FieldError
from wisp.api.fields import Errors, invalid
from wisp.api.kinds import EVENTING, FLOWS, MESSAGING, SERVING, SOURCES, Kind
from wisp.api.objectmeta import NameRule, validate_metadata
from wisp.config import Config

__all__ = ["default_object", "validate_object"]

Validator = Callable[[dict[str, Any], "dict[str, Any] | None", Config, Errors], None]
Defaulter = Callable[[dict[str, Any], Config], None]

# Service, Configuration and Route names become hostnames (`<name>.<ns>.<domain>`) and Revision
# names become tag targets and labels, so they must be DNS-1035 labels.
_NAME_RULES: dict[tuple[str, str], NameRule] = {
    ("", "Namespace"): NameRule.DNS1123_LABEL,
    (SERVING, "Service"): NameRule.DNS1035_LABEL,
    (SERVING, "Configuration"): NameRule.DNS1035_LABEL,
    (SERVING, "Route"): NameRule.DNS1035_LABEL,
    (SERVING, "Revision"): NameRule.DNS1035_LABEL,
}

_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Namespace"): lambda obj, old, _cfg, errs: core.validate_namespace(obj, old, errs),
    ("", "Secret"): lambda obj, old, _cfg, errs: core.validate_secret(obj, old, errs),
    ("", "ConfigMap"): lambda obj, old, _cfg, errs: core.validate_config_map(obj, old, errs),
    (SERVING, "Service"): serving.validate_service,
    (SERVING, "Configuration"): serving.validate_configuration,
    (SERVING, "Revision"): serving.validate_revision,
    (SERVING, "Route"): serving.validate_route,
    (SERVING, "DomainMapping"): serving.validate_domain_mapping,
    (EVENTING, "Broker"): eventing.validate_broker,
    (EVENTING, "Trigger"): eventing.validate_trigger,
    (EVENTING, "EventType"): flows.validate_event_type,
    (MESSAGING, "Channel"): flows.validate_channel,
    (MESSAGING, "InMemoryChannel"): flows.validate_channel,
    (MESSAGING, "Subscription"): flows.validate_subscription,
    (FLOWS, "Sequence"): flows.validate_sequence,
    (FLOWS, "Parallel"): flows.validate_parallel,
    (SOURCES, "PingSource"): eventing_sources.validate_ping_source,
    (SOURCES, "ApiServerSource"): eventing_sources.validate_api_server_source,
    (SOURCES, "ContainerSource"): eventing_sources.validate_container_source,
    (SOURCES, "SinkBinding"): eventing_sources.validate_sink_binding,
}

_DEFAULTERS: dict[tuple[str, str], Defaulter] = {
    ("", "Secret"): lambda obj, _cfg: core.default_secret(obj),
    (SERVING, "Service"): serving.default_service,
    (SERVING, "Configuration"): serving.default_configuration,
    (SERVING, "Revision"): serving.default_revision,
    (SERVING, "Route"): serving.default_route,
    (EVENTING, "Broker"): eventing.default_broker,
    (EVENTING, "Trigger"): eventing.default_trigger,
    (MESSAGING, "Channel"): flows.default_channel,
    (MESSAGING, "InMemoryChannel"): flows.default_channel,
    (MESSAGING, "Subscription"): flows.default_subscription,
    (FLOWS, "Sequence"): flows.default_flow,
    (FLOWS, "Parallel"): flows.default_flow,
    (SOURCES, "PingSource"): eventing_sources.default_ping_source,
    (SOURCES, "ApiServerSource"): eventing_sources.default_api_server_source,
    (SOURCES, "ContainerSource"): eventing_sources.default_source_sink,
    (SOURCES, "SinkBinding"): eventing_sources.default_source_sink,
}

# A DomainMapping's name is the domain it claims; generating one makes no sense.
_NO_GENERATE_NAME = {(SERVING, "DomainMapping")}


def default_object(kind: Kind, obj: dict[str, Any], config: Config) -> dict[str, Any]:
    """A defaulted copy of `obj` (never mutates it). Idempotent; `status` is left alone."""
    out = copy.deepcopy(obj)
    defaulter = _DEFAULTERS.get((kind.group, kind.kind))
    if defaulter is not None and isinstance(out, dict):
        defaulter(out, config)
    return out


def validate_object(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None,
                    config: Config) -> list[FieldError]:
    """Every problem with `obj` as Knative would report it; empty when valid.

    `old` is the stored object on update (None on create). Call it on the defaulted object.
    """
    errs: Errors = []
    if not isinstance(obj, dict):
        return [invalid(obj, "", "expected an object")]
    gk = (kind.group, kind.kind)
    validate_metadata(obj, _NAME_RULES.get(gk, NameRule.DNS1123_SUBDOMAIN), errs,
                      allow_generate_name=gk not in _NO_GENERATE_NAME)
    validator = _VALIDATORS.get(gk)
    if validator is not None:
        validator(obj, old if isinstance(old, dict) else None, config, errs)
    return _dedupe(errs)


def _dedupe(errs: Errors) -> list[FieldError]:
    """Drop exact repeats (a bad value can be reached by two checks) while keeping order."""
    return list(dict.fromkeys(errs))
