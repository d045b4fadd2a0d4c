"""CESQL's three value types, their zero values and the cast table (CESQL v1 §3.1, §3.7).

Values are plain Python objects — ``str``, ``int`` (kept inside the signed 32-bit range) and ``bool`` —
so evaluation allocates nothing extra.  Because ``bool`` is a subclass of ``int`` in Python, every type
test here uses ``type(v) is …`` rather than ``isinstance``.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from wisp.eventing.cesql.errors import CastError

Value = str | int | bool

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

# Digits are ASCII only: Python's int() would also accept "٣", "1_000" and surrounding blanks.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


class Type(Enum):
    """A CESQL type; ``ANY`` is only used for parameters that take a value as-is (the cast functions)."""

    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    ANY = "Any"

    def __str__(self) -> str:
        return self.value


ZERO: Final[dict[Type, Value]] = {Type.BOOLEAN: False, Type.INTEGER: 0, Type.STRING: ""}


def zero_of(t: Type | None) -> Value:
    """The value an expression of type ``t`` yields after an error; unknown types count as Boolean."""
    return ZERO.get(t, False) if t is not None else False


def type_of(v: Value) -> Type:
    """The CESQL type of a runtime value."""
    t = type(v)
    if t is bool:
        return Type.BOOLEAN
    if t is int:
        return Type.INTEGER
    return Type.STRING


def in_int32(n: int) -> bool:
    """Whether ``n`` is representable as a CESQL Integer."""
    return INT32_MIN <= n <= INT32_MAX


def to_string(v: Value) -> str:
    """Cast to String: integers in base 10, booleans as ``true``/``false``.  Never fails."""
    if type(v) is str:
        return v
    if type(v) is bool:
        return "true" if v else "false"
    return str(v)


def to_int(v: Value) -> int:
    """Cast to Integer; raises :class:`CastError` for text that is not a 32-bit base-10 integer."""
    if type(v) is int:
        return v
    if type(v) is bool:
        return 1 if v else 0
    if not isinstance(v, str) or _INT_TEXT.fullmatch(v) is None:
        raise CastError(f"cannot cast {v!r} to Integer")
    n = int(v)
    if not in_int32(n):
        raise CastError(f"cannot cast {v!r} to Integer: out of the 32-bit range")
    return n


def to_bool(v: Value) -> bool:
    """Cast to Boolean: ``0`` is false, other integers true, text must read ``true``/``false``."""
    if type(v) is bool:
        return v
    if type(v) is int:
        return v != 0
    lowered = str(v).lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise CastError(f"cannot cast {v!r} to Boolean")


def cast(v: Value, target: Type) -> Value:
    """Cast ``v`` to ``target`` (``ANY`` leaves it alone); raises :class:`CastError` on failure."""
    if target is Type.STRING:
        return to_string(v)
    if target is Type.INTEGER:
        return to_int(v)
    if target is Type.BOOLEAN:
        return to_bool(v)
    return v


def from_event(v: Any) -> Value | None:
    """Convert an attribute value from an event mapping into a CESQL value (``None`` = absent).

    Callers hand us whatever their event model holds: strings, ints and bools pass through; timestamps
    become RFC 3339 text and binary values base64, as the CloudEvents type system renders them.
    """
    t = type(v)
    if t is str or t is bool:
        return v  # type: ignore[no-any-return,unused-ignore]
    if t is int:
        return v if in_int32(v) else str(v)  # type: ignore[no-any-return,unused-ignore]
    if v is None:
        return None
    if isinstance(v, datetime):
        return _timestamp(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, Enum):
        return from_event(v.value)
    # Subclasses of the builtins are narrowed to them so that ``type(v) is …`` tests hold later.
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):
        return from_event(int(v))
    return str(v)


def _timestamp(v: datetime) -> str:
    if v.tzinfo is not None and v.utcoffset() == UTC.utcoffset(None):
        return v.replace(tzinfo=None).isoformat() + "Z"
    return v.isoformat()
