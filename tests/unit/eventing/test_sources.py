"""Source validation: schedules, time zones, data, sinks, resources and subjects (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from wisp.api import kinds
from wisp.api.validation import default_object, validate_object
from wisp.config import Config

CFG = Config()
SINK = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}


def _errors(kind: str, spec: dict[str, Any]) -> list[str]:
    k = kinds.lookup(kind)
    obj = default_object(k, {"apiVersion": k.api_version, "kind": k.kind,
                             "metadata": {"name": "s", "namespace": "default"}, "spec": spec}, CFG)
    return [e.render() for e in validate_object(k, obj, None, CFG)]


def test_ping_defaults_schedule_and_sink_namespace() -> None:
    k = kinds.lookup("pingsources")
    obj = default_object(k, {"metadata": {"name": "p", "namespace": "team"}, "spec": {"sink": SINK}}, CFG)
    assert obj["spec"]["schedule"] == "* * * * *"
    assert obj["spec"]["sink"]["ref"]["namespace"] == "team"


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"schedule": "* * *"}, "spec.schedule"),
    ({"schedule": "@every 5s"}, "@every"),
    ({"timezone": "Nowhere/Land"}, "spec.timezone"),
    ({"data": "x", "dataBase64": "eA=="}, "got both"),
    ({"dataBase64": "%%%"}, "spec.dataBase64"),
    ({"data": "[1,2]", "contentType": "application/json"}, "JSON object"),
    ({"sink": {"uri": "not-absolute"}}, "spec.sink.uri"),
    ({"sink": None}, "spec.sink"),
    ({"ceOverrides": {"extensions": {"Bad-Name": "x"}}}, "extension names"),
    ({"ceOverrides": {"extensions": {"type": "x"}}}, "core attributes"),
])
def test_bad_ping_sources_are_rejected(spec: dict[str, Any], fragment: str) -> None:
    errors = _errors("pingsources", {"sink": SINK, **spec})
    assert any(fragment in e for e in errors), errors


def test_good_ping_source_passes() -> None:
    spec = {"schedule": "*/2 * * * * *", "timezone": "Europe/Paris", "data": '{"a":1}',
            "contentType": "application/json", "sink": SINK, "ceOverrides": {"extensions": {"team": "x"}}}
    assert _errors("pingsources", spec) == []


@pytest.mark.parametrize(("kind", "spec", "fragment"), [
    ("apiserversources", {"resources": [], "sink": SINK}, "spec.resources"),
    ("apiserversources", {"resources": [{"kind": "Service"}], "sink": SINK}, "apiVersion"),
    ("apiserversources", {"resources": [{"apiVersion": "v1", "kind": "x"}], "mode": "Full", "sink": SINK},
     "spec.mode"),
    ("containersources", {"template": {"spec": {"containers": []}}, "sink": SINK}, "containers"),
    ("sinkbindings", {"subject": {"apiVersion": "serving.knative.dev/v1", "kind": "Service"}, "sink": SINK},
     "name or selector"),
])
def test_bad_sources_are_rejected(kind: str, spec: dict[str, Any], fragment: str) -> None:
    errors = _errors(kind, spec)
    assert any(fragment in e for e in errors), errors


def test_api_server_source_defaults_to_reference_mode() -> None:
    k = kinds.lookup("apiserversources")
    obj = default_object(k, {"spec": {"resources": [{"apiVersion": "v1", "kind": "ConfigMap"}], "sink": SINK}}, CFG)
    assert obj["spec"]["mode"] == "Reference"
