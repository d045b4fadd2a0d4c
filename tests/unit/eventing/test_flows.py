"""Sequence/Parallel children and channel/subscription/flow validation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from wisp.api import kinds
from wisp.api.validation import default_object, validate_object
from wisp.config import Config
from wisp.eventing.flows import desired_parallel, desired_sequence

CFG = Config()


def _errors(kind: str, obj: dict[str, Any]) -> list[str]:
    k = kinds.lookup(kind)
    full = default_object(k, {"apiVersion": k.api_version, "kind": k.kind, **obj}, CFG)
    return [e.render() for e in validate_object(k, full, None, CFG)]


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "uid": f"uid-{name}"}


def _seq(steps: int, reply: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"steps": [{"uri": f"http://s{i}/"} for i in range(steps)]}
    if reply:
        spec["reply"] = reply
    return {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": _meta("seq"), "spec": spec}


def test_sequence_chains_step_replies_through_the_next_channel() -> None:
    channels, subs = desired_sequence(_seq(3, {"uri": "http://end/"}))
    assert [c["metadata"]["name"] for c in channels] == [f"seq-kn-sequence-{i}" for i in range(3)]
    assert [s["spec"]["channel"]["name"] for s in subs] == [f"seq-kn-sequence-{i}" for i in range(3)]
    assert [s["spec"]["subscriber"]["uri"] for s in subs] == ["http://s0/", "http://s1/", "http://s2/"]
    assert subs[0]["spec"]["reply"]["ref"]["name"] == "seq-kn-sequence-1"
    assert subs[2]["spec"]["reply"] == {"uri": "http://end/"}
    owner = channels[0]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "uid-seq" and owner["controller"] is True


def test_parallel_builds_filter_and_subscriber_subscriptions_per_branch() -> None:
    par = {"apiVersion": "flows.knative.dev/v1", "kind": "Parallel", "metadata": _meta("p"),
           "spec": {"reply": {"uri": "http://r/"},
                    "branches": [{"filter": {"uri": "http://f0/"}, "subscriber": {"uri": "http://s0/"}},
                                 {"subscriber": {"uri": "http://s1/"}, "reply": {"uri": "http://r1/"}}]}}
    channels, subs = desired_parallel(par)
    assert [c["metadata"]["name"] for c in channels] == ["p-kn-parallel", "p-kn-parallel-0", "p-kn-parallel-1"]
    by_name = {s["metadata"]["name"]: s["spec"] for s in subs}
    assert by_name["p-kn-parallel-filter-0"]["channel"]["name"] == "p-kn-parallel"
    assert by_name["p-kn-parallel-filter-0"]["reply"]["ref"]["name"] == "p-kn-parallel-0"
    assert "subscriber" not in by_name["p-kn-parallel-filter-1"]  # no filter: pass-through
    assert by_name["p-kn-parallel-0"]["reply"] == {"uri": "http://r/"}
    assert by_name["p-kn-parallel-1"]["reply"] == {"uri": "http://r1/"}


def test_valid_flows_and_channels_pass() -> None:
    assert _errors("sequences", {"metadata": _meta("seq"), "spec": _seq(2)["spec"]}) == []
    assert _errors("inmemorychannels", {"metadata": _meta("c")}) == []
    sub = {"channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "c"},
           "subscriber": {"uri": "http://x/"}}
    assert _errors("subscriptions", {"metadata": _meta("s"), "spec": sub}) == []


@pytest.mark.parametrize(("kind", "spec", "fragment"), [
    ("sequences", {"steps": []}, "spec.steps"),
    ("sequences", {"steps": [{"uri": "relative"}]}, "spec.steps[0].uri"),
    ("sequences", {"steps": [{"uri": "http://a/"}],
                   "reply": {"ref": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel",
                                     "name": "seq-kn-sequence-0"}}}, "loop"),
    ("sequences", {"steps": [{"uri": "http://a/"}],
                   "reply": {"ref": {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "name": "seq"}}},
     "loop"),
    ("sequences", {"steps": [{"uri": "http://a/", "delivery": {"backoffDelay": "soon"}}]}, "backoffDelay"),
    ("parallels", {"branches": [{"filter": {"uri": "http://f/"}}]}, "spec.branches[0].subscriber"),
    ("subscriptions", {"channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "c"},
                       "subscriber": {"uri": "http://x/"},
                       "reply": {"ref": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel",
                                         "name": "c"}}}, "its own channel"),
    ("subscriptions", {"subscriber": {"uri": "http://x/"}}, "spec.channel"),
    ("subscriptions", {"channel": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"},
                       "subscriber": {"uri": "http://x/"}}, "spec.channel.kind"),
    ("channels", {"channelTemplate": {"kind": "KafkaChannel"}}, "spec.channelTemplate.kind"),
])
def test_bad_objects_get_clear_errors(kind: str, spec: dict[str, Any], fragment: str) -> None:
    errors = _errors(kind, {"metadata": _meta("seq"), "spec": spec})
    assert any(fragment in e for e in errors), errors


def test_subscription_channel_is_immutable() -> None:
    k = kinds.lookup("subscriptions")
    old = {"apiVersion": k.api_version, "kind": k.kind, "metadata": _meta("s"),
           "spec": {"channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "a"},
                    "subscriber": {"uri": "http://x/"}}}
    new = {**old, "spec": {**old["spec"], "channel": {**old["spec"]["channel"], "name": "b"}}}
    assert any("Immutable" in e.render() for e in validate_object(k, new, old, CFG))
