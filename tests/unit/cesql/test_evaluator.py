"""CESQL semantics the TCK does not pin down: 32-bit integers, casts, errors, filters, event values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from wisp.eventing.cesql import CesqlError, ErrorKind, Type, parse
from wisp.eventing.cesql import parser as parser_module

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "abc-1",
    "source": "https://example.com/src",
    "type": "com.example.created",
    "sequence": "10",
    "count": 3,
    "flag": True,
    "word": "true",
}


def run(text: str, event: dict[str, Any] | None = None) -> tuple[object, list[ErrorKind]]:
    value, errors = parse(text).evaluate(EVENT if event is None else event)
    assert all(isinstance(e, CesqlError) for e in errors)
    return value, [e.kind for e in errors]


# -- integers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("-7 / -2", 3),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7 % -3", 1),
    ],
)
def test_division_truncates_toward_zero(text: str, expected: int) -> None:
    assert run(text) == (expected, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2147483647 + 1", 2147483647),
        ("-2147483648 - 1", -2147483648),
        ("65536 * 65536", 2147483647),
        ("65536 * -65536", -2147483648),
        ("-(-2147483648)", 2147483647),
        ("-2147483648 / -1", 2147483647),
    ],
)
def test_integer_overflow_saturates_with_math_error(text: str, expected: int) -> None:
    assert run(text) == (expected, [ErrorKind.MATH])


def test_overflow_inside_a_larger_expression_yields_its_zero_value() -> None:
    assert run("2147483647 + 1 > 0") == (False, [ErrorKind.MATH])


def test_integer_bounds_are_exact() -> None:
    assert run("2147483646 + 1") == (2147483647, [])
    assert run("-2147483647 - 1") == (-2147483648, [])
    assert run("-2147483648 % -1") == (0, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INT('+5')", (5, [])),
        ("INT('-0012')", (-12, [])),
        ("INT('2147483647')", (2147483647, [])),
        ("INT('2147483648')", (0, [ErrorKind.CAST])),
        ("INT(' 5')", (0, [ErrorKind.CAST])),
        ("INT('1_000')", (0, [ErrorKind.CAST])),
        ("INT('\u0663')", (0, [ErrorKind.CAST])),  # ARABIC-INDIC DIGIT THREE is not an ASCII digit
        ("INT('')", (0, [ErrorKind.CAST])),
        ("'abc' + 1", (0, [ErrorKind.CAST])),
        ("sequence + 1", (11, [])),
    ],
)
def test_string_to_integer_casts(text: str, expected: tuple[object, list[ErrorKind]]) -> None:
    assert run(text) == expected


def test_event_integers_beyond_32_bits_are_seen_as_text() -> None:
    event = {**EVENT, "big": 2**40}
    assert run("big", event) == (str(2**40), [])
    assert run("big + 0", event) == (0, [ErrorKind.CAST])


# -- booleans, equality and implicit casts ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("BOOL('True')", (True, [])),
        ("BOOL('yes')", (False, [ErrorKind.CAST])),
        ("word AND TRUE", (True, [])),
        ("1 AND TRUE", (True, [])),  # Integer -> Boolean is a valid implicit cast...
        ("NOT 0", (True, [ErrorKind.CAST])),  # ...except under NOT, as the TCK pins (`NOT 10`)
        ("NOT 'maybe'", (True, [ErrorKind.CAST])),
        ("NOT NOT 10", (False, [ErrorKind.CAST])),  # the inner NOT's error zeroes the outer one
        ("'x' OR TRUE", (False, [ErrorKind.CAST])),
    ],
)
def test_boolean_casts(text: str, expected: tuple[object, list[ErrorKind]]) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sequence = 10", True),  # right operand Integer: the attribute is cast to Integer
        ("sequence = '010'", False),  # right operand String: compared as text
        ("10 = sequence", True),  # right operand String: 10 becomes '10'
        ("TRUE = 1", True),
        ("flag = 'true'", True),
        ("flag = 'TRUE'", False),
        ("'Abc' = 'abc'", False),  # string equality is case-sensitive
        ("count <> '3'", False),
    ],
)
def test_equality_overload_is_chosen_by_the_right_operand(text: str, expected: bool) -> None:
    assert run(text) == (expected, [])


def test_failed_equality_cast_is_false_with_cast_error() -> None:
    assert run("'abc' = 1") == (False, [ErrorKind.CAST])
    assert run("'abc' != 1") == (False, [ErrorKind.CAST])


def test_ordering_casts_both_sides_to_integer() -> None:
    assert run("'9' < '10'") == (True, [])
    assert run("count >= TRUE") == (True, [])
    assert run("'b' > 'a'") == (False, [ErrorKind.CAST])


# -- IN ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("count IN (1, 2, 3)", (True, [])),
        ("count IN ('3')", (True, [])),
        ("count NOT IN (1, 2)", (True, [])),
        ("type IN (source, id, 'com.example.created')", (True, [])),
        ("1 IN (1, 'x')", (True, [])),  # stops at the first match
        ("1 IN ('x', 1)", (False, [ErrorKind.CAST])),  # fails at the first bad cast
        ("1 NOT IN ('x', 1)", (False, [ErrorKind.CAST])),
        ("missing IN (1)", (False, [ErrorKind.MISSING_ATTRIBUTE])),
        ("1 IN (missing, 1)", (False, [ErrorKind.MISSING_ATTRIBUTE])),
        ("TRUE IN (0, 5)", (True, [])),
    ],
)
def test_in(text: str, expected: tuple[object, list[ErrorKind]]) -> None:
    assert run(text) == expected


# -- missing attributes, short circuits, zero values --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("missing", False),
        ("LENGTH(missing)", 0),
        ("UPPER(missing)", ""),
        ("CONCAT('a', missing)", ""),
        ("missing LIKE 'a%'", False),
        ("missing * 5", 0),
        ("1 / missing", 0),  # a missing attribute, not a division by zero
        ("TRUE AND missing", False),
        ("missing XOR FALSE", False),
    ],
)
def test_missing_attribute_yields_zero_value_of_the_expression(text: str, expected: object) -> None:
    value, kinds = run(text)
    assert (type(value), value, kinds) == (type(expected), expected, [ErrorKind.MISSING_ATTRIBUTE])


@pytest.mark.parametrize("text", ["TRUE OR missing", "FALSE AND missing", "flag OR 1 / 0 = 1"])
def test_and_or_short_circuit_skips_errors_on_the_right(text: str) -> None:
    value, kinds = run(text)
    assert kinds == []
    assert value is text.startswith(("TRUE", "flag"))


def test_xor_always_evaluates_both_sides() -> None:
    assert run("TRUE XOR missing") == (False, [ErrorKind.MISSING_ATTRIBUTE])


def test_evaluation_stops_at_the_first_error() -> None:
    assert run("missing + 1 / 0") == (0, [ErrorKind.MISSING_ATTRIBUTE])
    assert run("1 / 0 + missing") == (0, [ErrorKind.MATH])


def test_exists() -> None:
    assert run("EXISTS count AND NOT EXISTS missing") == (True, [])
    assert run("EXISTS specversion", {}) == (True, [])  # required attributes always exist
    assert run("EXISTS subject", {"subject": None}) == (False, [])


def test_data_is_not_addressable() -> None:
    event = {**EVENT, "data": "payload"}
    assert run("EXISTS data", event) == (False, [])
    assert run("data", event) == (False, [ErrorKind.MISSING_ATTRIBUTE])


# -- event values --------------------------------------------------------------------------------------


def test_timestamps_and_binary_values_are_seen_as_strings() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = {"time": when, "offset": when.astimezone(timezone(timedelta(hours=2))), "bin": b"\x00\x01"}
    assert run("time", event) == ("2024-01-02T03:04:05Z", [])
    assert run("offset LIKE '%+02:00'", event) == (True, [])
    assert run("bin", event) == ("AAE=", [])


def test_evaluate_without_an_event_reports_missing_attributes() -> None:
    value, errors = parse("id = 'x'").evaluate(None)
    assert (value, [e.kind for e in errors]) == (False, [ErrorKind.MISSING_ATTRIBUTE])
    assert "'id'" in errors[0].message


# -- filter semantics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type = 'com.example.created'", True),
        ("type = 'other'", False),
        ("missing = 'x'", False),  # errors never match
        ("NOT 10", False),  # even when the value is true
        ("1 / 0 = 0", False),
        ("word", True),  # a String result is cast to Boolean
        ("'TRUE'", True),
        ("'nope'", False),
        ("count", True),  # a non-zero Integer casts to true
        ("count - 3", False),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse(text).matches(EVENT) is expected


def test_matches_without_event() -> None:
    assert parse("EXISTS id").matches(None) is True
    assert parse("id = 'x'").matches(None) is False


def test_evaluation_never_reparses(monkeypatch: pytest.MonkeyPatch) -> None:
    expr = parse("source LIKE 'https://%' AND count IN (1, 2, 3)")

    def explode(_: str) -> list[object]:
        raise AssertionError("re-tokenized at evaluation time")

    monkeypatch.setattr(parser_module, "tokenize", explode)
    assert [expr.matches({**EVENT, "count": n}) for n in range(5)] == [False, True, True, True, False]


def test_errors_of_constant_subexpressions_are_reported_on_every_evaluation() -> None:
    expr = parse("1 / 0")
    assert expr.evaluate({}) == expr.evaluate({}) == (0, expr.evaluate(EVENT)[1])
    assert [e.kind for e in expr.evaluate({})[1]] == [ErrorKind.MATH]


def test_expression_metadata() -> None:
    expr = parse("LENGTH(subject) > 2 AND EXISTS myext OR NOPE(type)")
    assert expr.attributes() == frozenset({"subject", "myext", "type"})
    assert [e.kind for e in expr.static_errors] == [ErrorKind.MISSING_FUNCTION]
    assert expr.result_type is Type.BOOLEAN
    assert parse("subject").result_type is None
    assert parse("'x'").result_type is Type.STRING
    assert repr(expr).startswith("Expression(")
