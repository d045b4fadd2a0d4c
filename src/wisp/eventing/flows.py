"""Sequence and Parallel (`flows.knative.dev/v1`), built from channels and subscriptions (spec §2.6).

Pure functions compute the children an object should own; the reconciler (`messaging.py`)
creates or updates them in the store with an ownerReference, so deleting the flow deletes them.

* **Sequence** `s` with n steps: channels `s-kn-sequence-0..n-1`; Subscription *i* reads channel
  *i*, delivers to step *i* (with the step's delivery) and sends the reply to channel *i+1*; the
  last one replies to `spec.reply` (or drops the reply). The Sequence's address is channel 0.
* **Parallel** `p` with n branches: an ingress channel `p-kn-parallel`; per branch a channel
  `p-kn-parallel-i`, a filter Subscription `p-kn-parallel-filter-i` (ingress → branch filter,
  reply → branch channel; without a filter every event passes) and a subscriber Subscription
  `p-kn-parallel-i` (branch channel → subscriber, reply → branch reply, else `spec.reply`).
  A filter passes an event by answering it back (200 + the event) and drops it by answering
  without one. The Parallel's address is the ingress channel.

The channel kind comes from `spec.channelTemplate` (default: the durable `Channel`).
"""

from __future__ import annotations

from typing import Any

from wisp.api import kinds
from wisp.api.meta import ConditionSet, get_condition, owner_reference
from wisp.controllers.base import Obj, working_copy

__all__ = [
    "DEFAULT_CHANNEL_TEMPLATE",
    "FLOW_CONDITIONS",
    "PARALLEL",
    "SEQUENCE",
    "desired_parallel",
    "desired_sequence",
    "flow_status",
    "parallel_channel",
    "parallel_ingress",
    "sequence_channel",
]

SEQUENCE = kinds.lookup("sequences")
PARALLEL = kinds.lookup("parallels")
MESSAGING = "messaging.knative.dev/v1"
DEFAULT_CHANNEL_TEMPLATE = {"apiVersion": MESSAGING, "kind": "Channel"}
FLOW_CONDITIONS = ConditionSet("Ready", ("ChannelsReady", "SubscriptionsReady", "Addressable"))


def sequence_channel(name: str, i: int) -> str:
    return f"{name}-kn-sequence-{i}"


def parallel_ingress(name: str) -> str:
    return f"{name}-kn-parallel"


def parallel_channel(name: str, i: int) -> str:
    return f"{name}-kn-parallel-{i}"


def channel_template(flow: Obj) -> dict[str, Any]:
    tmpl = (flow.get("spec") or {}).get("channelTemplate") or {}
    return {"apiVersion": tmpl.get("apiVersion") or MESSAGING, "kind": tmpl.get("kind") or "Channel",
            "spec": dict(tmpl.get("spec") or {})}


def _meta(flow: Obj, name: str) -> Obj:
    meta = flow["metadata"]
    return {"name": name, "namespace": meta["namespace"],
            "labels": {f"flows.knative.dev/{flow['kind'].lower()}": meta["name"]},
            "ownerReferences": [owner_reference(flow)]}


def _channel(flow: Obj, name: str) -> Obj:
    tmpl = channel_template(flow)
    return {"apiVersion": tmpl["apiVersion"], "kind": tmpl["kind"], "metadata": _meta(flow, name),
            "spec": tmpl["spec"]}


def _channel_ref(flow: Obj, name: str) -> dict[str, str]:
    tmpl = channel_template(flow)
    return {"apiVersion": tmpl["apiVersion"], "kind": tmpl["kind"], "name": name}


def _subscription(flow: Obj, name: str, channel: str, subscriber: Any, reply: Any, delivery: Any) -> Obj:
    spec: dict[str, Any] = {"channel": _channel_ref(flow, channel)}
    if subscriber:
        spec["subscriber"] = subscriber
    if reply:
        spec["reply"] = reply
    if delivery:
        spec["delivery"] = delivery
    return {"apiVersion": MESSAGING, "kind": "Subscription", "metadata": _meta(flow, name), "spec": spec}


def desired_sequence(seq: Obj) -> tuple[list[Obj], list[Obj]]:
    """(channels, subscriptions) a Sequence owns."""
    name, spec = seq["metadata"]["name"], seq.get("spec") or {}
    steps = list(spec.get("steps") or [])
    channels = [_channel(seq, sequence_channel(name, i)) for i in range(len(steps))]
    subs = []
    for i, step in enumerate(steps):
        reply = {"ref": _channel_ref(seq, sequence_channel(name, i + 1))} if i + 1 < len(steps) else spec.get("reply")
        subscriber = {k: v for k, v in step.items() if k in ("ref", "uri")}
        subs.append(_subscription(seq, sequence_channel(name, i), sequence_channel(name, i), subscriber, reply,
                                  step.get("delivery")))
    return channels, subs


def desired_parallel(par: Obj) -> tuple[list[Obj], list[Obj]]:
    """(channels, subscriptions) a Parallel owns."""
    name, spec = par["metadata"]["name"], par.get("spec") or {}
    branches = list(spec.get("branches") or [])
    channels = [_channel(par, parallel_ingress(name))]
    subs = []
    for i, branch in enumerate(branches):
        channels.append(_channel(par, parallel_channel(name, i)))
        to_branch = {"ref": _channel_ref(par, parallel_channel(name, i))}
        subs.append(_subscription(par, f"{name}-kn-parallel-filter-{i}", parallel_ingress(name),
                                  branch.get("filter"), to_branch, branch.get("delivery")))
        subs.append(_subscription(par, parallel_channel(name, i), parallel_channel(name, i),
                                  branch.get("subscriber"), branch.get("reply") or spec.get("reply"),
                                  branch.get("delivery")))
    return channels, subs


def _ready(obj: Obj | None) -> tuple[bool, str]:
    if obj is None:
        return False, "not created yet"
    cond = get_condition(obj, "Ready") or {}
    if cond.get("status") == "True":
        return True, ""
    return False, f"{obj['kind']} {obj['metadata']['name']!r}: {cond.get('reason') or 'not ready'} " \
                  f"{cond.get('message') or ''}".rstrip()


def flow_status(flow: Obj, channels: list[Obj | None], subs: list[Obj | None], address_channel: Obj | None,
                now: float) -> Obj:
    """The flow with conditions, child statuses and address computed from its children."""
    out = working_copy(flow)
    status = out.setdefault("status", {})
    FLOW_CONDITIONS.initialize(out, now)
    status["observedGeneration"] = out["metadata"].get("generation", 1)
    status["channelStatuses"] = [_child(c) for c in channels if c is not None]
    status["subscriptionStatuses"] = [_child(s) for s in subs if s is not None]
    for ctype, objs in (("ChannelsReady", channels), ("SubscriptionsReady", subs)):
        problems = [msg for ok, msg in map(_ready, objs) if not ok]
        if problems:
            FLOW_CONDITIONS.mark_false(out, ctype, f"{ctype.removesuffix('Ready')}NotReady", problems[0], now)
        else:
            FLOW_CONDITIONS.mark_true(out, ctype, now)
    url = (((address_channel or {}).get("status") or {}).get("address") or {}).get("url")
    if url:
        status["address"] = {"url": url}
        FLOW_CONDITIONS.mark_true(out, "Addressable", now)
    else:
        status.pop("address", None)
        FLOW_CONDITIONS.mark_unknown(out, "Addressable", "NoAddress", "the ingress channel has no address yet", now)
    return out


def _child(obj: Obj) -> Obj:
    cond = get_condition(obj, "Ready") or {}
    return {"name": obj["metadata"]["name"], "kind": obj["kind"],
            "ready": {k: cond[k] for k in ("status", "reason", "message") if k in cond}}
