"""JSON encode/decode for the event hot path: orjson when installed, the standard library otherwise.

orjson is an optional speed-up (several times faster on large payloads); both paths produce
compact UTF-8 JSON and refuse to *parse* NaN/Infinity, so behaviour does not depend on which one is
present (when *writing* a non-finite float, orjson emits ``null`` where the standard library raises).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["HAVE_ORJSON", "dumps", "loads"]

try:  # pragma: no cover - exercised on whichever branch the machine has
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

HAVE_ORJSON = _orjson is not None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _std_loads(data: bytes | str) -> Any:
    return json.loads(data, parse_constant=_reject_constant)


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raises ``ValueError`` on malformed input."""
    if _orjson is None:
        return _std_loads(data)
    try:
        return _orjson.loads(data)
    except _orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits that JSON itself allows; retry before giving up.
        return _std_loads(data)


def dumps(value: Any) -> bytes:
    """Serialise to compact UTF-8 JSON; raises ``TypeError``/``ValueError`` for unserialisable values."""
    if _orjson is None:
        return _std_dumps(value)
    try:
        return _orjson.dumps(value)
    except TypeError:
        return _std_dumps(value)
