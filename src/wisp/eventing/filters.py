"""Trigger filters (Knative ``spec.filter`` and ``spec.filters``), compiled once into predicates.

Semantics follow knative/eventing ``pkg/eventfilter``:

* ``filter.attributes``: every listed attribute must be present; a non-empty value must equal the
  attribute's canonical string exactly (case-sensitive); ``""`` accepts any non-empty value.
* ``filters`` (CloudEvents Subscriptions API dialects), used instead of ``filter`` when non-empty,
  ANDed together: ``exact``/``prefix``/``suffix`` (maps attribute -> value; a missing attribute
  fails), ``all``/``any`` (lists), ``not`` (one filter), ``cesql`` (a CESQL v1 expression; an
  evaluation error counts as no match).

Like Knative, evaluation is three-valued: a filter object with no dialect (``{}``) abstains, an
``all``/``any``/``not`` whose children all abstain abstains too, and an event is delivered unless
the result is a definite failure. Validation (``validate_filters``) rejects such empty filters at
admission, so the abstaining case only matters for objects that skipped validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wisp.api.errors import FieldError

__all__ = [
    "DIALECTS",
    "Matcher",
    "compile_trigger_filter",
    "validate_filter_attributes",
    "validate_filters",
]

#: A compiled filter: attributes of one event (core and extensions) -> deliver or not.
Matcher = Callable[[Mapping[str, Any]], bool]
# Internal three-valued node: True pass, False fail, None "no filter".
_Node = Callable[[Mapping[str, Any]], bool | None]

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")
_NAME_MESSAGE = "Attribute name must start with a letter and can only contain lowercase alphanumeric"


def _text(value: Any) -> str:
    """The canonical string of an attribute value, as filters compare it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _always(_: Mapping[str, Any]) -> bool:
    return True


# -- spec.filter.attributes --------------------------------------------------------------------


def _compile_attributes(attributes: Mapping[str, str]) -> Matcher:
    wanted = tuple(attributes.items())

    def match(attrs: Mapping[str, Any]) -> bool:
        for name, want in wanted:
            value = attrs.get(name)
            if value is None:
                return False
            text = _text(value)
            if (text != want) if want else (text == ""):
                return False
        return True

    return match


# -- spec.filters dialects ---------------------------------------------------------------------


def _compile_pairs(pairs: Mapping[str, str], test: Callable[[str, str], bool]) -> _Node:
    wanted = tuple((k, str(v)) for k, v in pairs.items())
    if any(not k or not v for k, v in wanted):
        return lambda _attrs: None  # Knative materialises no filter from empty keys or values

    def node(attrs: Mapping[str, Any]) -> bool:
        for name, want in wanted:
            value = attrs.get(name)
            if value is None or not test(_text(value), want):
                return False
        return True

    return node


def _compile_all(children: list[_Node]) -> _Node:
    def node(attrs: Mapping[str, Any]) -> bool | None:
        result: bool | None = None
        for child in children:
            outcome = child(attrs)
            if outcome is False:
                return False
            if outcome:
                result = True
        return result

    return node


def _compile_any(children: list[_Node]) -> _Node:
    def node(attrs: Mapping[str, Any]) -> bool | None:
        result: bool | None = None
        for child in children:
            outcome = child(attrs)
            if outcome:
                return True
            if outcome is False:
                result = False
        return result

    return node


def _compile_not(child: _Node) -> _Node:
    def node(attrs: Mapping[str, Any]) -> bool | None:
        outcome = child(attrs)
        return None if outcome is None else not outcome

    return node


def _compile_cesql(expression: str) -> _Node:
    from wisp.eventing.cesql import parse  # lazy: CESQL is only loaded by triggers that use it

    compiled = parse(expression)

    def node(attrs: Mapping[str, Any]) -> bool:
        try:
            return bool(compiled.matches(attrs))
        except Exception:  # an evaluation error is a non-match, never a dispatcher crash
            return False

    return node


def _compile_filter(spec: Mapping[str, Any]) -> _Node:
    """One filter object; the first dialect present wins, as in Knative (validation forbids two)."""
    if spec.get("exact"):
        return _compile_pairs(spec["exact"], str.__eq__)
    if spec.get("prefix"):
        return _compile_pairs(spec["prefix"], str.startswith)
    if spec.get("suffix"):
        return _compile_pairs(spec["suffix"], str.endswith)
    if spec.get("all"):
        return _compile_all([_compile_filter(f) for f in spec["all"]])
    if spec.get("any"):
        return _compile_any([_compile_filter(f) for f in spec["any"]])
    if spec.get("not") is not None:
        return _compile_not(_compile_filter(spec["not"]))
    if spec.get("cesql"):
        return _compile_cesql(spec["cesql"])
    return lambda _attrs: None


def compile_trigger_filter(
    filter_attributes: Mapping[str, str] | None, filters: Sequence[Mapping[str, Any]] | None
) -> Matcher:
    """Compile a Trigger's ``spec.filter.attributes`` and ``spec.filters`` into one predicate.

    When ``filters`` is non-empty it is used and ``filter`` is ignored; with neither, every event
    matches. Raises ``CesqlParseError`` for a CESQL expression that does not parse (validation
    should have caught it at admission).
    """
    if filters:
        root = _compile_all([_compile_filter(f) for f in filters])
        return lambda attrs: root(attrs) is not False
    if filter_attributes:
        return _compile_attributes(filter_attributes)
    return _always


# -- validation --------------------------------------------------------------------------------


def validate_filter_attributes(attributes: Mapping[str, str] | None, path: str) -> list[FieldError]:
    """Check ``spec.filter.attributes``: every key must be a valid attribute name."""
    return _check_names(attributes or {}, f"{path}.attributes")


def _check_names(pairs: Mapping[str, Any], path: str) -> list[FieldError]:
    return [
        FieldError(f"{path}[{name}]", f"invalid key name {name!r}: {_NAME_MESSAGE}")
        for name in pairs
        if not isinstance(name, str) or _ATTRIBUTE_NAME.fullmatch(name) is None
    ]


def _check_pairs(value: Any, path: str) -> list[FieldError]:
    if not isinstance(value, Mapping):
        return [FieldError(path, "expected a map of attribute name to value")]
    if len(value) != 1:
        return [FieldError(path, "Multiple items found, can have only one key-value")]
    errors = _check_names(value, path)
    for name, text in value.items():
        if not isinstance(text, str) or text == "":
            errors.append(FieldError(f"{path}[{name}]", "value must be a non-empty string"))
    return errors


def _check_list(value: Any, path: str, dialect: str) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(path, "expected a list of filters")]
    if not value:
        return [FieldError(path, f"{dialect.capitalize()} must contain at least one nested filter")]
    return validate_filters(value, path)


def _check_cesql(value: Any, path: str) -> list[FieldError]:
    if not isinstance(value, str) or not value.strip():
        return [FieldError(path, "expected a non-empty CESQL expression")]
    from wisp.eventing.cesql import CesqlParseError, parse

    try:
        parse(value)
    except CesqlParseError as e:
        return [FieldError(path, f"invalid value {value!r}: syntax error: {e}")]
    return []


def _validate_one(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, Mapping):
        return [FieldError(path, "expected a filter object")]
    present = [d for d in DIALECTS if d in spec and spec[d] is not None]
    unknown = sorted(k for k in spec if k not in DIALECTS)
    if unknown:
        return [FieldError(f"{path}.{unknown[0]}", f"unknown filter dialect {unknown[0]!r}")]
    if len(present) != 1:
        found = "multiple dialects found" if present else "no dialect found"
        return [FieldError(path, f"{found}, filters can have only one dialect set: one of {DIALECTS}")]
    dialect = present[0]
    value, where = spec[dialect], f"{path}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        return _check_pairs(value, where)
    if dialect in ("all", "any"):
        return _check_list(value, where, dialect)
    if dialect == "not":
        return _validate_one(value, where)
    return _check_cesql(value, where)


def validate_filters(filters: Sequence[Any] | None, path: str) -> list[FieldError]:
    """Check ``spec.filters`` (``path`` is e.g. ``"spec.filters"``); an empty list means none."""
    if filters is None:
        return []
    if not isinstance(filters, list | tuple):
        return [FieldError(path, "expected a list of filters")]
    errors: list[FieldError] = []
    for index, spec in enumerate(filters):
        errors.extend(_validate_one(spec, f"{path}[{index}]"))
    return errors
