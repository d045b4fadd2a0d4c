"""The CloudEvent value type."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeAlias

from wisp.eventing.ce import _json
from wisp.eventing.ce.attributes import (
    REQUIRED,
    V03,
    AttributeValue,
    core_attributes,
    is_json_content_type,
    parse_timestamp,
    validate_attributes,
    validate_changes,
)

__all__ = ["CloudEvent", "EventData"]

#: ``None`` (no data), ``bytes`` (opaque payload), or a JSON value (``dict``, ``list``, ``str``, …).
EventData: TypeAlias = Any


def _check_data(data: EventData) -> EventData:
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    return data


@dataclass(frozen=True, slots=True, init=False)
class CloudEvent:
    """One CloudEvent: context attributes (core and extensions together) plus optional data.

    ``attributes`` holds canonical values (see ``wisp.eventing.ce.attributes``) in a read-only
    mapping, so an event can be shared between dispatchers without copying. ``data`` is ``None``
    when the event has none, ``bytes`` when it arrived as an opaque body (HTTP binary mode,
    ``data_base64``), or the JSON value a JSON-format event carried. A ``str`` is text for a
    non-JSON content type, and a JSON string when the content type is JSON or absent.
    Construction validates (``None`` values mean "unset"; ``datetime`` and ``bytes`` values are
    converted to canonical strings); decoders build already-checked events through ``_trusted``.
    """

    attributes: Mapping[str, AttributeValue]
    data: EventData

    def __init__(self, attributes: Mapping[str, object], data: EventData = None) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(validate_attributes(attributes)))
        object.__setattr__(self, "data", _check_data(data))

    def __hash__(self) -> int:
        return hash((self.attributes["source"], self.attributes["id"]))

    def __repr__(self) -> str:
        # Log lines must stay short even for 64 KB payloads: show the size, not the bytes.
        data = self.data
        shown = f"<{len(data)} bytes>" if isinstance(data, bytes) else repr(data)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return f"CloudEvent({dict(self.attributes)!r}, data={shown})"

    @classmethod
    def _trusted(cls, attributes: dict[str, AttributeValue], data: EventData) -> CloudEvent:
        """Wrap attributes that ``validate_attributes`` already produced, skipping a second check."""
        event = object.__new__(cls)
        object.__setattr__(event, "attributes", MappingProxyType(attributes))
        object.__setattr__(event, "data", data)
        return event

    @classmethod
    def create(
        cls,
        type: str,
        source: str,
        data: EventData = None,
        *,
        id: str | None = None,
        time: datetime | str | None = None,
        datacontenttype: str | None = None,
        subject: str | None = None,
        dataschema: str | None = None,
        extensions: Mapping[str, object] | None = None,
    ) -> CloudEvent:
        """A new CloudEvents 1.0 event; ``id`` defaults to a random UUID. ``time`` is never implied,
        because the caller owns the clock."""
        attrs: dict[str, object] = {
            **(extensions or {}),
            "specversion": "1.0",
            "id": id or str(uuid.uuid4()),
            "type": type,
            "source": source,
            "time": time,
            "datacontenttype": datacontenttype,
            "subject": subject,
            "dataschema": dataschema,
        }
        return cls(attrs, data)

    # -- typed views -------------------------------------------------------------------------

    @property
    def specversion(self) -> str:
        return str(self.attributes["specversion"])

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def subject(self) -> str | None:
        return self._optional_str("subject")

    @property
    def datacontenttype(self) -> str | None:
        return self._optional_str("datacontenttype")

    @property
    def dataschema(self) -> str | None:
        return self._optional_str("schemaurl" if self.specversion == V03 else "dataschema")

    @property
    def time(self) -> datetime | None:
        """``time`` as an aware datetime (microsecond precision); the attribute keeps the full text."""
        text = self.attributes.get("time")
        return None if text is None else parse_timestamp(str(text))

    @property
    def extensions(self) -> dict[str, AttributeValue]:
        """The attributes that are not core attributes of this event's spec version."""
        core = core_attributes(self.specversion)
        return {k: v for k, v in self.attributes.items() if k not in core}

    def get(self, name: str, default: AttributeValue | None = None) -> AttributeValue | None:
        return self.attributes.get(name, default)

    def _optional_str(self, name: str) -> str | None:
        value = self.attributes.get(name)
        return None if value is None else str(value)

    # -- derived events ----------------------------------------------------------------------

    def with_attributes(self, **changes: object) -> CloudEvent:
        """A copy with attributes set (or removed, when the new value is ``None``), re-validated.

        Only the changed attributes are checked when none of them is required or the specversion:
        the rest were validated when this event was made (brokers stamp two extensions per event).
        """
        if any(name in REQUIRED for name in changes):
            return CloudEvent({**self.attributes, **changes}, self.data)
        merged = dict(self.attributes)
        checked = validate_changes(str(merged["specversion"]), changes)
        for name, value in changes.items():
            if value is None:
                merged.pop(name, None)
        merged.update(checked)
        return CloudEvent._trusted(merged, self.data)

    def with_data(self, data: EventData, datacontenttype: str | None = None) -> CloudEvent:
        """A copy carrying new data (and, if given, a new content type)."""
        attrs: dict[str, object] = dict(self.attributes)
        if datacontenttype is not None:
            attrs["datacontenttype"] = datacontenttype
        return CloudEvent(attrs, data)

    # -- payload -----------------------------------------------------------------------------

    def data_is_json(self) -> bool:
        """Whether ``data`` (when not bytes) is a JSON value rather than text."""
        return is_json_content_type(self._optional_str("datacontenttype"))

    def data_bytes(self) -> bytes:
        """The payload as it travels in an HTTP binary-mode body (empty when there is no data)."""
        data = self.data
        if data is None:
            return b""
        if isinstance(data, bytes):
            return data
        if isinstance(data, str) and not self.data_is_json():
            return data.encode("utf-8")
        return _json.dumps(data)

    def json(self) -> Any:
        """The payload parsed as JSON, whatever form it arrived in (raises ``ValueError`` if not JSON)."""
        data = self.data
        if isinstance(data, bytes):
            return _json.loads(data)
        if isinstance(data, str) and not self.data_is_json():
            return _json.loads(data)
        return data
