"""The JSON event format and the JSON batch format (CE ``formats/json-format.md``, spec §1.4).

``data`` rules when writing: ``bytes`` become ``data_base64`` (spec: binary runtime data is always
Base64, whatever the content type); any other value is written as the JSON ``data`` member as is.
When reading: ``data_base64`` gives ``bytes``; ``data`` gives the JSON value unchanged (a JSON
string stays a ``str`` and is never parsed a second time). ``"data": null`` reads as "no data".
For CloudEvents 0.3, Base64 data travels in ``data`` with ``datacontentencoding: base64``; this
module owns that attribute and turns it into/from ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from wisp.eventing.ce import _json
from wisp.eventing.ce.attributes import V03, AttributeValue, validate_attributes
from wisp.eventing.ce.errors import InvalidEventError, MalformedEventError
from wisp.eventing.ce.event import CloudEvent, EventData

__all__ = [
    "BATCH_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "from_dict",
    "from_json",
    "from_json_batch",
    "to_dict",
    "to_json",
    "to_json_batch",
]

JSON_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_NO_DATA = object()


def to_dict(event: CloudEvent) -> dict[str, Any]:
    """The event as the JSON object of the JSON format (ready for any JSON serialiser)."""
    out: dict[str, Any] = dict(event.attributes)
    data = event.data
    if isinstance(data, bytes):
        encoded = base64.b64encode(data).decode("ascii")
        if event.specversion == V03:
            out["datacontentencoding"] = "base64"
            out["data"] = encoded
        else:
            out["data_base64"] = encoded
    elif data is not None:
        out["data"] = data
    return out


def to_json(event: CloudEvent) -> bytes:
    """Serialise one event in the JSON format (UTF-8)."""
    return _json.dumps(to_dict(event))


def to_json_batch(events: Iterable[CloudEvent]) -> bytes:
    """Serialise events as a JSON batch (a JSON array; ``[]`` for no events)."""
    return _json.dumps([to_dict(e) for e in events])


def _parse(body: bytes | str) -> Any:
    try:
        return _json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedEventError(f"body is not valid JSON: {e}") from e


def _base64(value: object, member: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidEventError(f"{member} must be a Base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise MalformedEventError(f"{member} is not valid Base64: {e}") from e


def _split(obj: Mapping[str, Any]) -> tuple[dict[str, Any], EventData]:
    """Separate the attribute members from ``data``/``data_base64``."""
    attrs = dict(obj)
    data = attrs.pop("data", None)
    data_b64 = attrs.pop("data_base64", None)
    if data_b64 is not None:
        if data is not None:
            raise InvalidEventError("an event must not have both 'data' and 'data_base64'")
        return attrs, _base64(data_b64, "data_base64")
    if attrs.get("specversion") == V03:
        encoding = attrs.get("datacontentencoding")
        if isinstance(encoding, str) and encoding.lower() == "base64":
            del attrs["datacontentencoding"]
            return attrs, None if data is None else _base64(data, "data")
    return attrs, data


def from_dict(obj: object) -> CloudEvent:
    """Build an event from a decoded JSON-format object; raises ``CloudEventError`` subclasses."""
    if not isinstance(obj, Mapping):
        raise MalformedEventError(f"a JSON-format event must be a JSON object, not {type(obj).__name__}")
    raw, data = _split(obj)
    attrs: dict[str, AttributeValue] = validate_attributes(raw)
    return CloudEvent._trusted(attrs, data)


def from_json(body: bytes | str) -> CloudEvent:
    """Parse one JSON-format event (e.g. a structured-mode HTTP body)."""
    return from_dict(_parse(body))


def from_json_batch(body: bytes | str) -> list[CloudEvent]:
    """Parse a JSON batch; one bad member rejects the whole batch, as the batch is one message."""
    items = _parse(body)
    if not isinstance(items, list):
        raise MalformedEventError("a JSON batch must be a JSON array")
    events = []
    for index, item in enumerate(items):
        try:
            events.append(from_dict(item))
        except (MalformedEventError, InvalidEventError) as e:
            raise type(e)(f"batch member {index}: {e.message}", attribute=e.attribute) from e
    versions = {e.specversion for e in events}
    if len(versions) > 1:
        raise InvalidEventError(f"all events in a batch must share one specversion, got {sorted(versions)}")
    return events
