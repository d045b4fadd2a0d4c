"""The CloudEvents HTTP protocol binding: binary, structured and batched content modes (spec §1.5).

Decoding is method-independent: callers hand in the headers and the body of a request or response.
Header values are expected the way ASGI servers and httpx present them (bytes decoded as latin-1);
percent-decoding is strict: a ``%`` not followed by two hex digits, or bytes that are not valid
UTF-8 once decoded, reject the event (``MalformedEventError``, 400).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeAlias
from urllib.parse import quote, unquote_to_bytes

from wisp.eventing.ce.attributes import AttributeValue, canonical_string, validate_attributes
from wisp.eventing.ce.errors import (
    InvalidEventError,
    MalformedEventError,
    NotACloudEventError,
    UnsupportedEventFormatError,
)
from wisp.eventing.ce.event import CloudEvent
from wisp.eventing.ce.jsonformat import (
    BATCH_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    from_json,
    from_json_batch,
    to_json,
    to_json_batch,
)

__all__ = [
    "Headers",
    "Mode",
    "decode_header_value",
    "detect_mode",
    "encode_header_value",
    "events_from_http",
    "from_http",
    "to_batch",
    "to_binary",
    "to_http",
    "to_structured",
]

#: A header mapping, or (name, value) pairs when a name may repeat: pass Starlette's
#: ``headers.items()`` or httpx's ``headers.multi_items()`` (httpx ``items()`` joins repeats with ",").
Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]

_STRUCTURED_CT = JSON_CONTENT_TYPE + "; charset=utf-8"
_BATCH_CT = BATCH_CONTENT_TYPE + "; charset=utf-8"
# Spec §1.5: encode space, '"', '%' and everything outside U+0021..U+007E.
_NEEDS_ENCODING = re.compile(r'[^\x21\x23\x24\x26-\x7e]')
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


class Mode(StrEnum):
    """HTTP content modes."""

    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


def _media_type(content_type: str | None) -> str:
    return "" if content_type is None else content_type.split(";", 1)[0].strip().lower()


def detect_mode(content_type: str | None) -> Mode:
    """The content mode a ``Content-Type`` announces (prefix match, case-insensitive)."""
    media = _media_type(content_type)
    if media.startswith("application/cloudevents-batch"):
        return Mode.BATCH
    if media.startswith("application/cloudevents"):
        return Mode.STRUCTURED
    return Mode.BINARY


# -- header values -----------------------------------------------------------------------------


def encode_header_value(value: str) -> str:
    """Percent-encode an attribute's canonical string for a ``ce-`` header (upper-case hex)."""
    if _NEEDS_ENCODING.search(value) is None:
        return value
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def _header_bytes(value: str) -> bytes:
    # Servers hand header bytes over latin-1-decoded; a str with wider characters came from Python.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def decode_header_value(value: str, name: str = "") -> str:
    """Undo RFC 7230 quoting (older senders), then exactly one round of strict percent-decoding."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
    if "%" not in value and value.isascii():
        return value
    if _BAD_PERCENT.search(value):
        raise MalformedEventError(f"header ce-{name} has a malformed percent-encoding", attribute=name)
    try:
        return unquote_to_bytes(_header_bytes(value)).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedEventError(
            f"header ce-{name} is not valid UTF-8 after percent-decoding", attribute=name
        ) from e


# -- decoding ----------------------------------------------------------------------------------


def _scan(headers: Headers) -> tuple[str | None, dict[str, str]]:
    """One pass over the headers: the Content-Type and the raw ``ce-`` values by attribute name."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    content_type: str | None = None
    ce: dict[str, str] = {}
    for key, value in pairs:
        lower = key.lower()
        if lower == "content-type":
            content_type = value
        elif lower.startswith("ce-"):
            name = lower[3:]
            if name in ce:
                raise InvalidEventError(f"header ce-{name} appears more than once", attribute=name)
            ce[name] = value
    return content_type, ce


def _binary(content_type: str | None, ce: dict[str, str], body: bytes) -> CloudEvent:
    if "specversion" not in ce:
        raise NotACloudEventError("not a CloudEvent: no ce-specversion header, no CloudEvents content type")
    # The binding forbids ce-datacontenttype; Content-Type is authoritative, the header a fallback.
    declared = ce.pop("datacontenttype", None)
    raw: dict[str, object] = {name: decode_header_value(v, name) for name, v in ce.items()}
    if content_type is not None or declared is not None:
        raw["datacontenttype"] = content_type if content_type is not None else declared
    attrs: dict[str, AttributeValue] = validate_attributes(raw)
    return CloudEvent._trusted(attrs, bytes(body) if body else None)


def _require_json(content_type: str | None, expected: str) -> None:
    if _media_type(content_type) != expected:
        raise UnsupportedEventFormatError(
            f"unsupported event format {content_type!r}; this receiver speaks {expected}"
        )


def _decode(headers: Headers, body: bytes) -> tuple[Mode, list[CloudEvent]]:
    content_type, ce = _scan(headers)
    mode = detect_mode(content_type)
    if mode is Mode.BATCH:
        _require_json(content_type, BATCH_CONTENT_TYPE)
        return mode, from_json_batch(body)
    if mode is Mode.STRUCTURED:
        _require_json(content_type, JSON_CONTENT_TYPE)
        return mode, [from_json(body)]
    return mode, [_binary(content_type, ce, body)]


def from_http(headers: Headers, body: bytes) -> CloudEvent:
    """Decode one event from a binary- or structured-mode message.

    A batch answers ``UnsupportedEventFormatError`` (415): batched mode may only be used when the
    receiver asked for it; receivers that accept batches call ``events_from_http``.
    """
    mode, events = _decode(headers, body)
    if mode is Mode.BATCH:
        raise UnsupportedEventFormatError("batched content mode is not accepted here")
    return events[0]


def events_from_http(headers: Headers, body: bytes) -> list[CloudEvent]:
    """Decode a message in any content mode into its events (a batch may hold none)."""
    return _decode(headers, body)[1]


# -- encoding ----------------------------------------------------------------------------------


def to_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Binary mode: attributes as ``ce-`` headers, ``datacontenttype`` as Content-Type, data as body."""
    headers: dict[str, str] = {}
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = str(value)
        else:
            headers["ce-" + name] = encode_header_value(canonical_string(value))
    data = event.data
    if "content-type" not in headers and data is not None and not isinstance(data, bytes):
        # A JSON-format event without datacontenttype implies JSON; say so once it is a bare body.
        headers["content-type"] = "application/json"
    return headers, event.data_bytes()


def to_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as a JSON-format body."""
    return {"content-type": _STRUCTURED_CT}, to_json(event)


def to_batch(events: Iterable[CloudEvent]) -> tuple[dict[str, str], bytes]:
    """Batched mode: the events as a JSON batch body."""
    return {"content-type": _BATCH_CT}, to_json_batch(events)


def to_http(event: CloudEvent, mode: Mode = Mode.BINARY) -> tuple[dict[str, str], bytes]:
    """Encode one event in binary (default, what Knative sends) or structured mode."""
    if mode is Mode.BINARY:
        return to_binary(event)
    if mode is Mode.STRUCTURED:
        return to_structured(event)
    return to_batch([event])
