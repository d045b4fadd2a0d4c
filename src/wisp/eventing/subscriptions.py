"""Subscriptions: one consumer of a channel's stream, delivering to a subscriber, reply → `spec.reply`.

A Subscription reuses the Trigger dispatch loop (`dispatch.TriggerDispatcher`: cursor, retries
with the DeliverySpec's backoff, dead-letter sink with `knativeerror*` extensions) with three
differences, which is all a channel needs (spec §2.5, §3.2):

* it reads the channel's stream and matches every event (channels have no filters);
* a reply goes to `status.physicalSubscription.replyUri` — published in-process when that is a
  channel of this wisp, POSTed otherwise — and is **dropped** when the Subscription has no reply;
  a reply that cannot be delivered fails the whole delivery (retried, then dead-lettered with
  `knativeerrordest` = the reply URL);
* a Subscription without a subscriber but with a reply forwards each event unchanged to the reply
  (Knative's pass-through; Parallel branches without a filter use it).

Delivery options come from the Subscription, or else from the channel's `spec.delivery`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wisp.api import kinds
from wisp.api.errors import FieldError
from wisp.api.meta import ConditionSet
from wisp.controllers.base import Context, Obj, working_copy
from wisp.eventing.broker import IngressRejected
from wisp.eventing.channels import CHANNEL_CONDITIONS, CHANNEL_KINDS, channel_stream
from wisp.eventing.cloudevents import CloudEvent, to_binary
from wisp.eventing.delivery import Destination, InvalidDelivery, effective_delivery, parse_delivery, parse_destination
from wisp.eventing.destinations import UnresolvedDestination, resolve_destination
from wisp.eventing.dispatch import DEFAULT_TIMEOUT, Outcome, TriggerDispatcher, TriggerSpec

__all__ = [
    "SUBSCRIPTION",
    "SUBSCRIPTION_CONDITIONS",
    "ChannelPublisher",
    "SubscriptionDispatcher",
    "SubscriptionPlan",
    "SubscriptionSpec",
    "plan_subscription",
]

log = logging.getLogger("wisp.eventing.subscriptions")

SUBSCRIPTION = kinds.lookup("subscriptions")
SUBSCRIPTION_CONDITIONS = ConditionSet("Ready", ("ChannelReady", "ReferencesResolved", "AddedToChannel"))

ChannelPublisher = Callable[[str, CloudEvent], Awaitable[bool]]
"""`(reply_url, event) -> handled`: publishes in-process when the URL is a local channel
(raising `IngressRejected` on failure) and returns False when it is not one."""


def _match_all(_attrs: Any) -> bool:
    return True


@dataclass(frozen=True)
class SubscriptionSpec(TriggerSpec):
    """A TriggerSpec whose stream is a channel's and whose replies go to `reply`."""

    channel_stream: str = ""
    reply: str = ""
    channel_plural: str = ""

    @property
    def stream(self) -> str:
        return self.channel_stream

    @property
    def consumer(self) -> str:
        return f"subscription-{self.uid}"


class SubscriptionDispatcher(TriggerDispatcher):
    """The Trigger loop, with channel replies and pass-through (see the module docstring)."""

    def __init__(self, spec: SubscriptionSpec, *args: Any, local: ChannelPublisher, **kwargs: Any) -> None:
        super().__init__(spec, *args, **kwargs)
        self._local = local

    async def _attempt(self, spec: TriggerSpec, url: str, event: CloudEvent) -> Outcome:
        if not url:  # no subscriber: the event itself is the "reply" (pass-through)
            return Outcome(True, 200, reply=event)
        return await super()._attempt(spec, url, event)

    async def _reply(self, spec: TriggerSpec, reply: CloudEvent, ttl: object) -> Outcome:
        assert isinstance(spec, SubscriptionSpec)
        if not spec.reply:
            return Outcome(True, 200)  # no spec.reply: replies are discarded (spec §3.2)
        event = reply.with_attributes(knativebrokerttl=ttl) if ttl is not None else reply
        try:
            if await self._local(spec.reply, event):
                return Outcome(True, 202)
        except IngressRejected as e:
            retry_after = None if e.retry_after is None else str(e.retry_after)
            return Outcome(False, e.status, body=e.message.encode(), retry_after=retry_after)
        headers, body = to_binary(event)
        resp = await self._sender.send(spec.reply, headers, body, spec.policy.timeout or DEFAULT_TIMEOUT)
        if resp.status is not None and 200 <= resp.status <= 299:
            return Outcome(True, resp.status)
        return Outcome(False, resp.status, body=resp.body or resp.error.encode(),
                       retry_after=resp.header("retry-after"))


@dataclass
class SubscriptionPlan:
    subscription: Obj
    spec: SubscriptionSpec | None
    channel: Obj | None


def _resolve(ctx: Context, ns: str, raw: Any, path: str) -> tuple[str | None, str]:
    """(url or None, error message); an absent destination resolves to ''."""
    if not raw:
        return "", ""
    errors: list[FieldError] = []
    dest = parse_destination(raw, path, errors)
    if dest is None or errors:
        return None, "; ".join(e.render() for e in errors)
    try:
        return resolve_destination(ctx.store, ns, dest), ""
    except UnresolvedDestination as e:
        return None, f"{path}: {e.reason}: {e.message}"


def _policy(raw: Any) -> Any:
    try:
        return parse_delivery(raw if isinstance(raw, dict) else None)
    except InvalidDelivery:
        return None


def plan_subscription(ctx: Context, sub: Obj) -> SubscriptionPlan:
    """Resolve channel, subscriber, reply and dead-letter sink; `spec` is None when not deliverable."""
    out = working_copy(sub)
    meta, spec = out["metadata"], out.get("spec") or {}
    ns, now = meta["namespace"], ctx.now()
    status = out.setdefault("status", {})
    status["observedGeneration"] = meta.get("generation", 1)
    SUBSCRIPTION_CONDITIONS.initialize(out, now)
    ref = spec.get("channel") or {}
    kind = CHANNEL_KINDS.get(str(ref.get("kind", "")))
    channel = ctx.store.find(kind, ns, str(ref.get("name", ""))) if kind else None
    if channel is None or not CHANNEL_CONDITIONS.is_happy(channel):
        reason = "ChannelNotFound" if channel is None else "ChannelNotReady"
        SUBSCRIPTION_CONDITIONS.mark_false(out, "ChannelReady", reason,
                                           f"{ref.get('kind', 'Channel')} {ref.get('name', '')!r} is not ready", now)
    else:
        SUBSCRIPTION_CONDITIONS.mark_true(out, "ChannelReady", now)
    policy = effective_delivery(_policy(spec.get("delivery")), _policy((channel or {}).get("spec", {}).get("delivery")))
    subscriber, e1 = _resolve(ctx, ns, spec.get("subscriber"), "spec.subscriber")
    reply, e2 = _resolve(ctx, ns, spec.get("reply"), "spec.reply")
    dls, e3 = _resolve_dls(ctx, ns, policy.dead_letter_sink)
    status["physicalSubscription"] = {k: v for k, v in (("subscriberUri", subscriber or ""), ("replyUri", reply or ""),
                                                         ("deadLetterSinkUri", dls or "")) if v}
    errors = [e for e in (e1, e2, e3) if e]
    if errors:
        SUBSCRIPTION_CONDITIONS.mark_false(out, "ReferencesResolved", "ReferencesNotResolved", "; ".join(errors), now)
    else:
        SUBSCRIPTION_CONDITIONS.mark_true(out, "ReferencesResolved", now)
    if channel is None or errors or kind is None or not CHANNEL_CONDITIONS.is_happy(channel):
        return SubscriptionPlan(out, None, channel)
    return SubscriptionPlan(out, SubscriptionSpec(
        namespace=ns, name=meta["name"], broker=f"{kind.plural}/{ref.get('name')}",
        uid=str(meta.get("uid") or meta["name"]), subscriber=subscriber or "", matcher=_match_all,
        policy=policy, dead_letter_uri=dls or None, broker_url=reply or "",
        channel_stream=channel_stream(ns, kind.plural, str(ref.get("name"))), reply=reply or "",
        channel_plural=kind.plural), channel)


def _resolve_dls(ctx: Context, ns: str, sink: Destination | None) -> tuple[str | None, str]:
    if sink is None:
        return "", ""
    try:
        return resolve_destination(ctx.store, ns, sink), ""
    except UnresolvedDestination as e:
        return None, f"spec.delivery.deadLetterSink: {e.reason}: {e.message}"
