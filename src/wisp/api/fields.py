"""Field paths, Knative-style field errors and type-checked reads of JSON-like objects.

Validation walks user-supplied dicts that may hold anything (a YAML typo can turn a list into a
string), so every read goes through a getter that reports a wrong type as a field error instead
of raising. Messages follow `knative.dev/pkg/apis.FieldError` so that users and tools that know
Knative's wording recognise them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from wisp.api.errors import FieldError

T = TypeVar("T")

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
FORBIDDEN = "FieldValueForbidden"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"

Errors = list[FieldError]


def at(base: str, *parts: str | int) -> str:
    """Extend a path: `at("spec", "traffic", 1, "tag")` is `spec.traffic[1].tag`."""
    path = base
    for part in parts:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        elif part:
            path = f"{path}.{part}" if path else part
    return path


def key(base: str, name: str) -> str:
    """A map entry's path, as Knative's `ViaKey`: `metadata.labels[app]`."""
    return f"{base}[{name}]"


def show(value: Any) -> str:
    """A value as it should appear inside a message (strings unquoted, as Go's %v)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


# -- error constructors (messages as knative.dev/pkg/apis) -----------------------------------------

def missing(path: str, hint: str = "") -> FieldError:
    return FieldError(path, f"missing field(s){': ' + hint if hint else ''}", REQUIRED)


def disallowed(path: str) -> FieldError:
    return FieldError(path, "must not set the field(s)", FORBIDDEN)


def invalid(value: Any, path: str, details: str = "") -> FieldError:
    message = f"invalid value: {show(value)}"
    return FieldError(path, f"{message} ({details})" if details else message, INVALID)


def out_of_bounds(value: Any, lower: Any, upper: Any, path: str) -> FieldError:
    return FieldError(path, f"expected {show(lower)} <= {show(value)} <= {show(upper)}", INVALID)


def got_both(path: str, *names: str) -> FieldError:
    """More than one of a set of mutually exclusive fields is set (`path` is their parent)."""
    return FieldError(path, f"expected exactly one, got both: {', '.join(names)}", INVALID)


def got_neither(path: str, *names: str) -> FieldError:
    """None of a set of alternatives is set (`path` is their parent)."""
    return FieldError(path, f"expected exactly one, got neither: {', '.join(names)}", REQUIRED)


def invalid_key(name: str, path: str, details: str = "") -> FieldError:
    message = f"invalid key name {json.dumps(name)}"
    return FieldError(path, f"{message}: {details}" if details else message, INVALID)


def generic(message: str, path: str, reason: str = INVALID) -> FieldError:
    return FieldError(path, message, reason)


# -- type-checked reads -----------------------------------------------------------------------------

def _wrong_type(value: Any, path: str, expected: str, errs: Errors) -> None:
    errs.append(invalid(value, path, f"expected {expected}"))


def get_map(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> dict[str, Any] | None:
    """`obj[name]` if it is an object; None when absent or null, an error when of another type."""
    return _get_typed(obj, name, path, errs, dict, "an object")


def require_map(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> dict[str, Any] | None:
    """`get_map` for a field that must be there: None (validation stops) also reports it missing."""
    value = get_map(obj, name, path, errs)
    if value is None:
        errs.append(missing(path))
    return value


def get_list(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> list[Any] | None:
    return _get_typed(obj, name, path, errs, list, "a list")


def get_str(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> str | None:
    return _get_typed(obj, name, path, errs, str, "a string")


def get_bool(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> bool | None:
    return _get_typed(obj, name, path, errs, bool, "a boolean")


def _get_typed(obj: Mapping[str, Any], name: str, path: str, errs: Errors, kind: type[T],
               expected: str) -> T | None:
    """`obj[name]` if it is a `kind`; None when absent or null, an error when of another type."""
    value = obj.get(name)
    if value is None or isinstance(value, kind):
        return value
    _wrong_type(value, path, expected, errs)
    return None


def as_int(value: Any) -> int | None:
    """An integer, accepting integral floats (JSON clients send 50.0); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def get_int(obj: Mapping[str, Any], name: str, path: str, errs: Errors) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    number = as_int(value)
    if number is None:
        _wrong_type(value, path, "an integer", errs)
    return number


def items_of(value: list[Any], path: str, errs: Errors) -> list[tuple[int, dict[str, Any]]]:
    """The (index, entry) pairs of a list of objects; non-object entries are reported."""
    out: list[tuple[int, dict[str, Any]]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            out.append((i, entry))
        else:
            _wrong_type(entry, at(path, i), "an object", errs)
    return out
