"""Properties over arbitrary input: parsing fails only with CesqlParseError, evaluation never raises."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wisp.eventing.cesql import CesqlError, CesqlParseError, Expression, parse

TOKENS = [
    *"()=<>+-*/%,!",
    "!=", "<>", "<=", ">=", "AND", "or", "Xor", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "false",
    "0", "1", "-1", "2147483647", "-2147483648", "2147483648", "'a%'", "'x_'", '"q"', "'", '"', "\\",
    "id", "type", "myext", "num", "flag", "missing", "my_ext",
    "ABS", "LENGTH", "CONCAT", "CONCAT_WS", "LEFT", "RIGHT", "SUBSTRING", "INT", "BOOL", "STRING",
    "LOWER", "UPPER", "TRIM", "NOPE",
]  # fmt: skip

EVENT_VALUES = st.one_of(
    st.text(max_size=6), st.integers(-(2**31), 2**31 - 1), st.booleans(), st.sampled_from(["1", "true", "-7"])
)
EVENTS = st.fixed_dictionaries(
    {"specversion": st.just("1.0"), "id": EVENT_VALUES, "source": st.just("/s"), "type": EVENT_VALUES},
    optional={"myext": EVENT_VALUES, "num": EVENT_VALUES, "flag": EVENT_VALUES},
)


def try_parse(text: str) -> Expression | None:
    try:
        return parse(text)
    except CesqlParseError as err:
        assert 0 <= err.position <= len(text)
        return None


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_parse_arbitrary_text_raises_only_parse_errors(text: str) -> None:
    try_parse(text)


@settings(max_examples=400)
@given(st.lists(st.sampled_from(TOKENS), max_size=14), EVENTS)
def test_token_soup_parses_or_fails_cleanly_and_evaluates_totally(
    tokens: list[str], event: dict[str, Any]
) -> None:
    expr = try_parse(" ".join(tokens))
    if expr is None:
        return
    value, errors = expr.evaluate(event)
    assert type(value) in (str, int, bool)
    assert len(errors) <= 1 and all(isinstance(e, CesqlError) for e in errors)
    if type(value) is int:
        assert -(2**31) <= value <= 2**31 - 1
    assert expr.matches(event) in (True, False)
    if errors:
        assert expr.matches(event) is False


@settings(max_examples=200)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1), st.sampled_from("+-*/%"))
def test_arithmetic_matches_32_bit_reference(a: int, b: int, op: str) -> None:
    value, errors = parse(f"{a} {op} {b}").evaluate({})
    if op in "/%" and b == 0:
        assert (value, [e.kind for e in errors]) == (0, ["math"])
        return
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1) if b else 0
    exact = {"+": a + b, "-": a - b, "*": a * b, "/": quotient, "%": a - b * quotient}[op]
    clamped = max(-(2**31), min(2**31 - 1, exact))
    assert value == clamped
    assert [e.kind for e in errors] == ([] if clamped == exact else ["math"])
