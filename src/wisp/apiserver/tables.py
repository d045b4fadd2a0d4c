"""Server-side printing (`meta.k8s.io/v1` Table), so `kubectl get ksvc` shows URL and READY columns.

The columns mirror the additionalPrinterColumns of Knative's CRDs; kinds without an entry get Name
and Age, as kubectl's default printer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wisp.api.kinds import Kind
from wisp.api.meta import get_condition
from wisp.clock import age

Obj = dict[str, Any]
Getter = Callable[[Obj], Any]
TABLE_ACCEPT = "as=Table"


def _status(key: str) -> Getter:
    return lambda obj: (obj.get("status") or {}).get(key, "")


def _address(obj: Obj) -> str:
    return str(((obj.get("status") or {}).get("address") or {}).get("url", ""))


def _ready(field: str) -> Getter:
    return lambda obj: str((get_condition(obj, "Ready") or {}).get(field, ""))


def _label(key: str) -> Getter:
    return lambda obj: (obj["metadata"].get("labels") or {}).get(key, "")


def _spec(*path: str) -> Getter:
    def get(obj: Obj) -> Any:
        value: Any = obj.get("spec") or {}
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return "" if value is None else value
    return get


READY, REASON = ("Ready", _ready("status")), ("Reason", _ready("reason"))
COLUMNS: dict[str, list[tuple[str, Getter]]] = {
    "Service": [("URL", _status("url")), ("LatestCreated", _status("latestCreatedRevisionName")),
                ("LatestReady", _status("latestReadyRevisionName")), READY, REASON],
    "Configuration": [("LatestCreated", _status("latestCreatedRevisionName")),
                      ("LatestReady", _status("latestReadyRevisionName")), READY, REASON],
    "Revision": [("Config Name", _label("serving.knative.dev/configuration")),
                 ("Generation", _label("serving.knative.dev/configurationGeneration")), READY, REASON,
                 ("Actual Replicas", _status("actualReplicas")), ("Desired Replicas", _status("desiredReplicas"))],
    "Route": [("URL", _status("url")), READY, REASON],
    "DomainMapping": [("URL", _status("url")), READY, REASON],
    "Broker": [("URL", _address), READY, REASON],
    "Trigger": [("Broker", _spec("broker")), ("Subscriber_URI", _status("subscriberUri")), READY, REASON],
    "Channel": [("URL", _address), READY, REASON],
    "InMemoryChannel": [("URL", _address), READY, REASON],
    "Subscription": [READY, REASON],
    "Sequence": [("URL", _address), READY, REASON],
    "Parallel": [("URL", _address), READY, REASON],
    "PingSource": [("Schedule", _spec("schedule")), ("Sink", _status("sinkUri")), READY, REASON],
    "ApiServerSource": [("Sink", _status("sinkUri")), READY, REASON],
    "ContainerSource": [("Sink", _status("sinkUri")), READY, REASON],
    "SinkBinding": [("Sink", _status("sinkUri")), READY, REASON],
}


def wants_table(accept: str) -> bool:
    """kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, …`."""
    return TABLE_ACCEPT in accept.replace(" ", "")


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str) else str(value)


def to_table(kind: Kind, items: list[Obj], resource_version: str, now: float) -> Obj:
    """A Table of `items`: Name, the kind's columns, Age."""
    columns = COLUMNS.get(kind.kind, [])
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [{"name": name, "type": "string", "format": "", "description": name, "priority": 0}
                    for name, _ in columns]
    definitions.append({"name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0})
    rows = []
    for obj in items:
        meta = obj["metadata"]
        created = age(meta.get("creationTimestamp"), now) or "<unknown>"
        cells = [meta["name"], *(_cell(get(obj)) for _, get in columns), created]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                                                "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
