"""EventType registry: a catalogue of the events that flow through brokers (spec §2.7).

EventTypes are ordinary stored objects (`eventing.knative.dev/v1beta3`), created by users or,
optionally, **automatically from observed traffic**: for a Broker annotated
`eventing.knative.dev/eventtype-auto-create: "true"`, every accepted event whose (type, source)
pair has not been seen yet creates an EventType that references the Broker and lists `type`,
`source` (and `datacontenttype` when present) as attributes. Knative gates the same behaviour
behind its alpha `eventtype-auto-create` feature flag; wisp gates it per Broker so the hot path
of every other broker pays nothing.

Creation happens off the ingress path: `observe` only records the pair in a bounded set and
schedules a store write on the loop, so a busy broker is never slowed by it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from wisp.api import kinds
from wisp.api.errors import APIError
from wisp.controllers.base import Context
from wisp.eventing.cloudevents import CloudEvent

__all__ = ["AUTO_CREATE_ANNOTATION", "EVENTTYPE", "EventTypeRecorder", "event_type_name", "event_type_object"]

log = logging.getLogger("wisp.eventing.eventtypes")

EVENTTYPE = kinds.lookup("eventtypes")
BROKER = kinds.lookup("brokers")
AUTO_CREATE_ANNOTATION = "eventing.knative.dev/eventtype-auto-create"
MAX_SEEN = 10_000


def event_type_name(broker: str, type_: str, source: str) -> str:
    """A stable DNS-safe name for a (broker, type, source) triple."""
    digest = hashlib.sha256(f"{broker}\0{type_}\0{source}".encode()).hexdigest()[:10]
    return f"{broker[:40]}-{digest}"


def event_type_object(namespace: str, broker: str, event: CloudEvent) -> dict[str, Any]:
    """The EventType auto-created for an observed event (pure)."""
    attrs = [{"name": "type", "required": True, "value": event.type},
             {"name": "source", "required": True, "value": event.source}]
    content_type = event.get("datacontenttype")
    if content_type:
        attrs.append({"name": "datacontenttype", "required": False, "value": str(content_type)})
    return {
        "apiVersion": EVENTTYPE.api_version, "kind": EVENTTYPE.kind,
        "metadata": {"name": event_type_name(broker, event.type, event.source), "namespace": namespace,
                     "labels": {"eventing.knative.dev/auto-created": "true"}},
        "spec": {"reference": {"apiVersion": BROKER.api_version, "kind": BROKER.kind, "name": broker},
                 "description": f"Event type auto-created from traffic through broker {broker}",
                 "attributes": attrs},
    }


def auto_create_enabled(broker: dict[str, Any]) -> bool:
    annotations = (broker.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(AUTO_CREATE_ANNOTATION, "")).lower() == "true"


class EventTypeRecorder:
    """Creates EventTypes for first-seen (type, source) pairs on opted-in brokers."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._enabled: set[tuple[str, str]] = set()
        self._seen: set[tuple[str, str, str, str]] = set()

    def set_enabled(self, namespace: str, broker: str, enabled: bool) -> None:
        (self._enabled.add if enabled else self._enabled.discard)((namespace, broker))

    @property
    def active(self) -> bool:
        return bool(self._enabled)

    def observe(self, namespace: str, broker: str, event: CloudEvent) -> None:
        if (namespace, broker) not in self._enabled:
            return
        key = (namespace, broker, event.type, event.source)
        if key in self._seen:
            return
        if len(self._seen) >= MAX_SEEN:
            self._seen.clear()
        self._seen.add(key)
        obj = event_type_object(namespace, broker, event)
        if self._ctx.store.find(EVENTTYPE, namespace, obj["metadata"]["name"]) is not None:
            return
        try:
            self._ctx.store.create(EVENTTYPE, obj)
            log.info("%s/broker/%s: new event type %s from %s", namespace, broker, event.type, event.source)
        except APIError as e:
            log.debug("event type for %s not created: %s", event.type, e)

    async def close(self) -> None:
        """Nothing to release (the recorder has no tasks)."""
