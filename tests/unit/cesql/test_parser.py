"""CESQL syntax: precedence and associativity, literals, case-insensitivity, parse errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import wisp.eventing.cesql as cesql
from wisp.eventing.cesql import MAX_DEPTH, CesqlParseError, parse
from wisp.eventing.cesql.ast import Binary, Call, Exists, Identifier, In, Like, Literal, Node, Unary
from wisp.eventing.cesql.parser import parse_ast


def shape(node: Node) -> object:
    """A compact, position-free rendering of a syntax tree for structural assertions."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Identifier):
        return node.name
    if isinstance(node, Unary):
        return (node.op, shape(node.operand))
    if isinstance(node, Binary):
        return (shape(node.left), node.op, shape(node.right))
    if isinstance(node, Like):
        return (shape(node.operand), "NOT LIKE" if node.negated else "LIKE", node.pattern)
    if isinstance(node, In):
        return (shape(node.operand), "NOT IN" if node.negated else "IN", [shape(i) for i in node.items])
    if isinstance(node, Exists):
        return ("EXISTS", node.name)
    assert isinstance(node, Call)
    return (node.name, [shape(a) for a in node.args])


def value(text: str) -> object:
    result, errors = parse(text).evaluate({})
    assert errors == []
    return result


# -- precedence and associativity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", (1, "+", (2, "*", 3))),
        ("10 - 2 - 3", ((10, "-", 2), "-", 3)),  # arithmetic is left-associative
        ("100 / 10 % 3", ((100, "/", 10), "%", 3)),
        ("1 + 1 = 2", ((1, "+", 1), "=", 2)),
        ("1 < 2 = TRUE", ((1, "<", 2), "=", True)),  # comparisons share a level, left to right
        ("a = 1 AND b = 2", (("a", "=", 1), "AND", ("b", "=", 2))),
        # AND, OR and XOR share one level and associate to the right, as in CESQLParser.g4.
        ("a AND b OR c", ("a", "AND", ("b", "OR", "c"))),
        ("a OR b AND c XOR d", ("a", "OR", ("b", "AND", ("c", "XOR", "d")))),
        ("NOT a AND b", (("NOT", "a"), "AND", "b")),
        ("NOT a LIKE 'x'", (("NOT", "a"), "LIKE", "x")),  # unary binds tighter than LIKE
        ("-a * 2", (("-", "a"), "*", 2)),
        ("a LIKE 'x' = TRUE", (("a", "LIKE", "x"), "=", True)),
        ("1 + a IN (2)", (1, "+", ("a", "IN", [2]))),  # IN binds tighter than arithmetic
        ("a IN (1) AND b NOT IN ('x', c)", (("a", "IN", [1]), "AND", ("b", "NOT IN", ["x", "c"]))),
        ("EXISTS a = TRUE", (("EXISTS", "a"), "=", True)),
        ("LENGTH(a) + 1", (("LENGTH", ["a"]), "+", 1)),
        ("(a OR b) AND c", (("a", "OR", "b"), "AND", "c")),
    ],
)
def test_precedence(text: str, expected: object) -> None:
    assert shape(parse_ast(text)) == expected


def test_logic_operators_group_to_the_right_when_evaluated() -> None:
    # Left-to-right grouping would give (FALSE AND FALSE) OR TRUE = true.
    assert value("FALSE AND FALSE OR TRUE") is False
    assert value("(FALSE AND FALSE) OR TRUE") is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4 * 2 + 4 / 2", 10), ("2 * 3 - 4 * 5", -14), ("-2 * 3", -6), ("2 - -3", 5), ("5-3", 2), ("- 5", -5)],
)
def test_arithmetic_precedence_values(text: str, expected: int) -> None:
    assert value(text) == expected


# -- literals and words -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ("'a\\'b'", "a'b"),
        ('"a\\"b"', 'a"b'),
        ("'a\\b'", "a\\b"),  # a backslash before anything but the quote is kept
        ("'a\"b'", 'a"b'),
        ("'multi\nline'", "multi\nline"),
        ("''", ""),
        ("+7", 7),
        ("-2147483648", -2147483648),
        ("2147483647", 2147483647),
        ("007", 7),
    ],
)
def test_literals(text: str, expected: object) -> None:
    assert value(text) == expected


@pytest.mark.parametrize("text", ["true aNd NoT false", "TRUE and not FALSE", "'ab' like 'a%' or FALSE"])
def test_keywords_are_case_insensitive(text: str) -> None:
    assert value(text) is True


def test_function_names_and_identifiers_are_case_insensitive() -> None:
    assert value("lower('AB') = Lower('aB')") is True
    assert value("concat_ws(',', 'a', 'b')") == "a,b"
    event = {"specversion": "1.0", "id": "x1", "source": "s", "type": "t"}
    assert parse("ID = 'x1' AND exists ID").evaluate(event) == (True, [])


def test_identifiers_may_start_with_digits() -> None:
    assert parse("1abc").evaluate({"1abc": "v"}) == ("v", [])


# -- parse errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("ABC(", 4),
        ("1 +", 3),
        ("'unterminated", 0),
        ("a @ b", 2),
        ("a ! b", 2),
        ("NOT", 3),
        ("()", 1),
        ("a IN ()", 6),  # the set must not be empty
        ("a LIKE b", 7),  # the pattern must be a string literal
        ("a LIKE 5", 7),
        ("a NOT b", 6),
        ("my_ext = 1", 0),  # underscores are only allowed in function names
        ("abc1(2)", 0),  # digits are not allowed in function names
        ("TRUE(1)", 4),
        ("+'5'", 0),  # '+' is only a literal sign
        ("2147483648", 0),
        ("-2147483649", 0),
        ("1 2", 2),
        ("EXISTS 'a'", 7),
        ("EXISTS my_ext", 7),
        ("é = 1", 0),
        ("a = 1)", 5),
    ],
)
def test_parse_errors_report_position(text: str, position: int) -> None:
    with pytest.raises(CesqlParseError) as info:
        parse(text)
    assert info.value.position == position
    assert info.value.kind == "parse"


def test_parse_rejects_non_string_input() -> None:
    with pytest.raises(CesqlParseError):
        parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda n: "(" * n + "1" + ")" * n,
        lambda n: "NOT " * n + "TRUE",
        lambda n: " + ".join(["a"] * (n + 1)),
        lambda n: " OR ".join(["a"] * (n + 1)),
        lambda n: "LENGTH(" * n + "'x'" + ")" * n,
    ],
)
def test_nesting_is_bounded(build: Callable[[int], str]) -> None:
    deepest_allowed = build(MAX_DEPTH - 2)
    parse(deepest_allowed).evaluate({"a": "1"})
    with pytest.raises(CesqlParseError, match="nested deeper"):
        parse(build(MAX_DEPTH * 5))


def test_parse_error_message_names_position() -> None:
    with pytest.raises(CesqlParseError) as info:
        parse("a = ")
    assert "position 4" in str(info.value)


def test_public_api_is_pinned() -> None:
    assert sorted(cesql.__all__) == sorted(
        [
            "BUILTINS",
            "MAX_DEPTH",
            "REQUIRED_ATTRIBUTES",
            "CastError",
            "CesqlError",
            "CesqlFunctionError",
            "CesqlParseError",
            "ErrorKind",
            "Expression",
            "Function",
            "FunctionEvaluationError",
            "FunctionTable",
            "GenericError",
            "MathError",
            "MissingAttributeError",
            "MissingFunctionError",
            "Type",
            "Value",
            "like_matcher",
            "parse",
        ]
    )
