"""Validation and defaulting of `sources.knative.dev/v1` kinds (pure; spec §2.8).

PingSource follows knative/eventing `pkg/apis/sources/v1/ping_{defaults,validation}.go`: the
schedule defaults to `* * * * *` and must parse (5 fields, or 6 with leading seconds, or a
descriptor; `@every` is rejected), `timezone` must be an IANA zone, `data` and `dataBase64` are
mutually exclusive, `dataBase64` must decode, and with `contentType: application/json` the data
must be a JSON object. ApiServerSource needs resources with apiVersion and kind and a `mode` of
`Reference` or `Resource`. ContainerSource needs a container with a command or an image.
SinkBinding needs a subject with apiVersion, kind and a name or a selector. Every source needs a
well-formed sink; `ceOverrides.extensions` keys must be valid CloudEvents attribute names.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from wisp.api.fields import Errors, at, get_list, get_map, get_str, invalid, missing, require_map
from wisp.config import Config
from wisp.eventing.ce.attributes import is_valid_name
from wisp.eventing.cron import InvalidSchedule, parse_schedule
from wisp.eventing.delivery import parse_destination

__all__ = [
    "API_SERVER_MODES",
    "default_api_server_source",
    "default_ping_source",
    "default_source_sink",
    "validate_api_server_source",
    "validate_container_source",
    "validate_ping_source",
    "validate_sink_binding",
]

DEFAULT_SCHEDULE = "* * * * *"
API_SERVER_MODES = ("Reference", "Resource")
_RESERVED_OVERRIDES = {"id", "source", "type", "specversion", "time", "subject", "datacontenttype", "dataschema"}


def default_source_sink(obj: dict[str, Any], config: Config) -> None:
    """A sink ref without a namespace means the source's own namespace."""
    spec = obj.get("spec")
    sink = spec.get("sink") if isinstance(spec, dict) else None
    ref = sink.get("ref") if isinstance(sink, dict) else None
    if isinstance(ref, dict) and not ref.get("namespace"):
        ref["namespace"] = (obj.get("metadata") or {}).get("namespace") or "default"


def _sink(spec: dict[str, Any], errs: Errors) -> None:
    if spec.get("sink") is None:
        errs.append(missing("spec.sink"))
        return
    parse_destination(spec["sink"], "spec.sink", errs)


def _ce_overrides(spec: dict[str, Any], errs: Errors) -> None:
    overrides = get_map(spec, "ceOverrides", "spec.ceOverrides", errs)
    if overrides is None:
        return
    extensions = get_map(overrides, "extensions", "spec.ceOverrides.extensions", errs) or {}
    for name in extensions:
        path = f"spec.ceOverrides.extensions[{name}]"
        if not is_valid_name(str(name)):
            errs.append(invalid(name, path, "extension names are lower-case letters and digits"))
        elif name in _RESERVED_OVERRIDES:
            errs.append(invalid(name, path, "core attributes cannot be overridden"))


# -- PingSource ------------------------------------------------------------------------------------

def default_ping_source(obj: dict[str, Any], config: Config) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and not spec.get("schedule"):
        spec["schedule"] = DEFAULT_SCHEDULE
    default_source_sink(obj, config)


def validate_ping_source(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    schedule = get_str(spec, "schedule", "spec.schedule", errs) or DEFAULT_SCHEDULE
    timezone = get_str(spec, "timezone", "spec.timezone", errs)
    try:
        parse_schedule(schedule, timezone)
    except InvalidSchedule as e:
        path = "spec.timezone" if timezone and "time zone" in str(e) else "spec.schedule"
        errs.append(invalid(timezone if path == "spec.timezone" else schedule, path, str(e)))
    _ping_data(spec, errs)
    _sink(spec, errs)
    _ce_overrides(spec, errs)


def _ping_data(spec: dict[str, Any], errs: Errors) -> None:
    data = get_str(spec, "data", "spec.data", errs)
    data64 = get_str(spec, "dataBase64", "spec.dataBase64", errs)
    if data and data64:
        errs.append(invalid("data, dataBase64", "spec", "expected exactly one, got both: [data, dataBase64]"))
        return
    raw: bytes | None = data.encode() if data else None
    if data64:
        try:
            raw = base64.b64decode(data64, validate=True)
        except (binascii.Error, ValueError):
            errs.append(invalid(data64, "spec.dataBase64", "not valid base64"))
            return
    content_type = str(spec.get("contentType") or "")
    if raw is not None and content_type.split(";")[0].strip().lower() == "application/json":
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            errs.append(invalid(data or data64, "spec.dataBase64" if data64 else "spec.data",
                                "with contentType application/json the data must be a JSON object"))


# -- ApiServerSource -------------------------------------------------------------------------------

def default_api_server_source(obj: dict[str, Any], config: Config) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and not spec.get("mode"):
        spec["mode"] = "Reference"
    default_source_sink(obj, config)


def validate_api_server_source(obj: dict[str, Any], old: dict[str, Any] | None, config: Config,
                               errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    mode = spec.get("mode") or "Reference"
    if mode not in API_SERVER_MODES:
        errs.append(invalid(mode, "spec.mode", "expected Reference or Resource"))
    resources = get_list(spec, "resources", "spec.resources", errs)
    if not resources:
        errs.append(missing("spec.resources"))
    for i, res in enumerate(resources or []):
        path = at("spec.resources", i)
        if not isinstance(res, dict):
            errs.append(invalid(res, path, "expected an object"))
            continue
        for key in ("apiVersion", "kind"):
            if not res.get(key):
                errs.append(missing(at(path, key)))
        _selector(res.get("selector"), at(path, "selector"), errs)
    owner = get_map(spec, "owner", "spec.owner", errs)
    if owner is not None and not (owner.get("apiVersion") and owner.get("kind")):
        errs.append(missing("spec.owner.kind", "an owner filter needs apiVersion and kind"))
    _sink(spec, errs)
    _ce_overrides(spec, errs)


def _selector(sel: Any, path: str, errs: Errors) -> None:
    if sel is None:
        return
    if not isinstance(sel, dict):
        errs.append(invalid(sel, path, "expected a label selector"))
        return
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        op = expr.get("operator") if isinstance(expr, dict) else None
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errs.append(invalid(op, at(f"{path}.matchExpressions", i, "operator"),
                                "expected In, NotIn, Exists or DoesNotExist"))


# -- ContainerSource and SinkBinding -----------------------------------------------------------------

def validate_container_source(obj: dict[str, Any], old: dict[str, Any] | None, config: Config,
                              errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    template = get_map(spec, "template", "spec.template", errs) or {}
    containers = ((template.get("spec") or {}).get("containers")) or []
    if not containers:
        errs.append(missing("spec.template.spec.containers"))
    for i, container in enumerate(containers):
        if not isinstance(container, dict) or not (container.get("command") or container.get("image")
                                                   or container.get("args")):
            errs.append(missing(at("spec.template.spec.containers", i, "command"),
                                "set a command (or an image from wisp's store)"))
    _sink(spec, errs)
    _ce_overrides(spec, errs)


def validate_sink_binding(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    spec = require_map(obj, "spec", "spec", errs)
    if spec is None:
        return
    subject = get_map(spec, "subject", "spec.subject", errs)
    if subject is None:
        errs.append(missing("spec.subject"))
    else:
        for key in ("apiVersion", "kind"):
            if not subject.get(key):
                errs.append(missing(at("spec.subject", key)))
        if bool(subject.get("name")) == bool(subject.get("selector")):
            errs.append(invalid(subject.get("name"), "spec.subject",
                                "expected exactly one of name or selector"))
        _selector(subject.get("selector"), "spec.subject.selector", errs)
    _sink(spec, errs)
    _ce_overrides(spec, errs)
