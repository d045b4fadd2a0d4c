"""`wisp func invoke`: build the request a function expects (plain HTTP or a CloudEvent) and read the answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from wisp.eventing.cloudevents import CloudEvent, CloudEventError, from_http, to_binary

Format = Literal["http", "cloudevent"]


@dataclass(frozen=True)
class Invocation:
    method: str
    headers: dict[str, str]
    body: bytes


def _payload(data: str | None) -> tuple[object, str]:
    """JSON when the data parses as JSON, text otherwise."""
    if data is None:
        return None, ""
    try:
        return json.loads(data), "application/json"
    except ValueError:
        return data, "text/plain"


def build_invocation(fmt: Format, data: str | None, *, event_type: str = "wisp.func.invoke",
                     source: str = "wisp/cli", event_id: str | None = None) -> Invocation:
    """The HTTP request for one call: a GET/POST, or a binary-mode CloudEvent POST."""
    if fmt == "http":
        if data is None:
            return Invocation("GET", {}, b"")
        _, ctype = _payload(data)
        return Invocation("POST", {"content-type": ctype}, data.encode())
    value, ctype = _payload(data if data is not None else "{}")
    event = CloudEvent.create(event_type, source, value, id=event_id or str(uuid.uuid4()),
                              datacontenttype=ctype)
    headers, body = to_binary(event)
    return Invocation("POST", dict(headers), body)


def describe_reply(fmt: Format, headers: dict[str, str], body: bytes) -> str:
    """What to print: the body, or for a CloudEvent reply its attributes followed by its data."""
    if fmt != "cloudevent" or (not body and "ce-id" not in headers):
        return body.decode("utf-8", "replace")
    try:
        event = from_http(headers.items(), body)
    except CloudEventError:
        return body.decode("utf-8", "replace")
    lines = [f"{k}: {v}" for k, v in sorted(event.attributes.items())]
    data = event.data_bytes().decode("utf-8", "replace")
    return "\n".join(["Context Attributes,", *(f"  {line}" for line in lines), "Data,", f"  {data}"]) + "\n"
