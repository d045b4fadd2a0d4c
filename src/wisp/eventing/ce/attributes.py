"""Context attributes: naming rules, the type system and canonical string encodings (CE spec §1.1 to 1.3).

Attribute values are stored in their JSON-format representation: ``bool`` for Boolean, ``int`` for
Integer and ``str`` for every other type (String, URI, URI-reference, Timestamp, Binary as Base64).
That form round-trips through every binding without a schema for extensions, and keeps the original
text of ``time`` (nanosecond precision survives, and filters compare it as sent). Typed views such
as ``CloudEvent.time`` parse on demand. Python values that have a canonical string form
(``datetime`` for Timestamp, ``bytes`` for Binary) are accepted on construction and converted.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from functools import lru_cache
from typing import TypeAlias

from wisp.eventing.ce.errors import InvalidEventError, UnsupportedSpecVersionError

__all__ = [
    "REQUIRED",
    "SPEC_VERSIONS",
    "AttrType",
    "AttributeValue",
    "canonical_string",
    "core_attributes",
    "format_timestamp",
    "is_json_content_type",
    "is_valid_name",
    "parse_timestamp",
    "validate_attributes",
]

AttributeValue: TypeAlias = str | int | bool

V1 = "1.0"
V03 = "0.3"
SPEC_VERSIONS = (V1, V03)
REQUIRED = ("id", "source", "specversion", "type")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class AttrType(Enum):
    """The CloudEvents type system (spec §1.3)."""

    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    BINARY = "Binary"
    URI = "URI"
    URI_REF = "URI-reference"
    TIMESTAMP = "Timestamp"


_COMMON = {
    "id": AttrType.STRING,
    "source": AttrType.URI_REF,
    "specversion": AttrType.STRING,
    "type": AttrType.STRING,
    "datacontenttype": AttrType.STRING,
    "subject": AttrType.STRING,
    "time": AttrType.TIMESTAMP,
}
_CORE: dict[str, dict[str, AttrType]] = {
    V1: {**_COMMON, "dataschema": AttrType.URI},
    # 0.3 is accepted so that old producers keep working through a broker (Knative's Go SDK does
    # the same); such events are forwarded as 0.3, never silently up-converted.
    V03: {**_COMMON, "schemaurl": AttrType.URI_REF, "datacontentencoding": AttrType.STRING},
}

_NAME = re.compile(r"[a-z0-9]+")
# Spec §1.3 String: no controls (C0, DEL, C1), no surrogates, no noncharacters.
_NONCHARS = "".join(f"\\U{p:04x}fffe\\U{p:04x}ffff" for p in range(1, 17))
_BAD_STRING = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff\\ufdd0-\\ufdef\\ufffe\\uffff" + _NONCHARS + "]"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}\s*(?:;.*)?", re.DOTALL)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def core_attributes(specversion: str) -> Mapping[str, AttrType]:
    """The core attributes of a spec version and their types."""
    return _CORE[specversion]


def is_valid_name(name: str) -> bool:
    """Spec §1.2: ASCII lower-case letters and digits, at least one; ``data`` is reserved.

    Names longer than 20 characters or starting with a digit are only discouraged (SHOULD NOT),
    so they are accepted.
    """
    return name != "data" and _NAME.fullmatch(name) is not None


def _check_string(name: str, value: str) -> None:
    if not (value.isascii() and value.isprintable()) and _BAD_STRING.search(value):
        raise InvalidEventError(
            f"attribute {name!r} contains a character CloudEvents forbids in strings", attribute=name
        )


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; precision beyond microseconds is truncated, never rounded."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac, sign, off_h, off_m = m.group(7, 8, 9, 10)
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"time of day out of range: {text!r}")
    tz = UTC
    if sign is not None:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            raise ValueError(f"UTC offset out of range: {text!r}")
        delta = timedelta(hours=oh, minutes=om)
        tz = timezone(-delta if sign == "-" else delta)
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    # A leap second (:60) has no datetime; it is the last instant of the minute.
    return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 text for a datetime; naive datetimes are taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@lru_cache(maxsize=256)
def is_json_content_type(content_type: str | None) -> bool:
    """JSON-ish media types (``*/json``, ``*/*+json``) and an absent type carry data as JSON (§1.4)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


def canonical_string(value: object) -> str:
    """The canonical string encoding of a typed value (spec §1.3), as HTTP headers carry it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"no CloudEvents type for {type(value).__name__}")


def _invalid(name: str, message: str) -> InvalidEventError:
    return InvalidEventError(f"attribute {name!r} {message}", attribute=name)


def _as_text(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | bytes | bytearray | memoryview):
        return canonical_string(value)
    raise _invalid(name, f"must be a string, not {type(value).__name__}")


def _core_value(name: str, kind: AttrType, value: object) -> str:
    text = _as_text(name, value)
    if text == "":
        raise _invalid(name, "must not be empty")
    _check_string(name, text)
    if kind is AttrType.TIMESTAMP:
        try:
            parse_timestamp(text)
        except ValueError as e:
            raise _invalid(name, f"is not an RFC 3339 timestamp: {text!r}") from e
    elif kind is AttrType.URI and _SCHEME.match(text) is None:
        raise _invalid(name, f"must be an absolute URI: {text!r}")
    elif name == "datacontenttype" and _MEDIA_TYPE.fullmatch(text) is None:
        raise _invalid(name, f"is not an RFC 2046 media type: {text!r}")
    return text


def _extension_value(name: str, value: object) -> AttributeValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            raise _invalid(name, "is outside the 32-bit Integer range")
        return value
    if not isinstance(value, str | datetime | bytes | bytearray | memoryview):
        raise _invalid(name, f"must be a Boolean, Integer or String, not {type(value).__name__}")
    text = _as_text(name, value)
    _check_string(name, text)
    return text


def _specversion(raw: Mapping[str, object]) -> str:
    version = raw.get("specversion")
    if version is None:
        raise InvalidEventError("missing required attribute 'specversion'", attribute="specversion")
    if not isinstance(version, str):
        raise _invalid("specversion", "must be a string")
    if version not in _CORE:
        raise UnsupportedSpecVersionError(
            f"unsupported specversion {version!r} (supported: {', '.join(SPEC_VERSIONS)})",
            attribute="specversion",
        )
    return version


def validate_changes(specversion: str, changes: Mapping[str, object]) -> dict[str, AttributeValue]:
    """Canonical forms of optional or extension attributes being set on an already valid event."""
    core = _CORE[specversion]
    out: dict[str, AttributeValue] = {}
    for name, value in changes.items():
        if value is None:
            continue
        kind = core.get(name)
        if kind is not None:
            out[name] = _core_value(name, kind, value)
        elif is_valid_name(name):
            out[name] = _extension_value(name, value)
        else:
            raise _invalid(name, "is not a valid attribute name (lower-case a-z and 0-9 only)")
    return out


def validate_attributes(raw: Mapping[str, object]) -> dict[str, AttributeValue]:
    """Check a whole attribute set and return it in canonical form; ``None`` values mean "unset".

    Raises ``InvalidEventError`` (or ``UnsupportedSpecVersionError``) naming the first bad attribute.
    """
    out = validate_changes(_specversion(raw), raw)
    for name in REQUIRED:
        if name not in out:
            raise InvalidEventError(f"missing required attribute {name!r}", attribute=name)
    return out
