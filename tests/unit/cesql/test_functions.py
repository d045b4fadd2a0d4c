"""Built-in functions beyond the TCK, arity dispatch, and user-defined functions."""

from __future__ import annotations

import pytest

from wisp.eventing.cesql import (
    BUILTINS,
    CesqlFunctionError,
    ErrorKind,
    Function,
    FunctionTable,
    Type,
    parse,
)

STR, INT, BOOL = Type.STRING, Type.INTEGER, Type.BOOLEAN


def run(text: str, functions: FunctionTable = BUILTINS) -> tuple[object, list[ErrorKind]]:
    value, errors = parse(text, functions).evaluate({"name": "Ünïcode", "n": "2"})
    return value, [e.kind for e in errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LENGTH(name)", 7),  # characters, not bytes
        ("LENGTH(12345)", 5),
        ("UPPER(name)", "ÜNÏCODE"),
        ("TRIM('\u2003\t a b \u00a0\n')", "a b"),  # Unicode whitespace
        ("CONCAT(1, TRUE, 'x')", "1truex"),
        ("CONCAT_WS(n, 'a', 'b', 'c')", "a2b2c"),
        ("LEFT(name, n)", "Ün"),
        ("RIGHT('abc', 0)", ""),
        ("RIGHT('abc', 3)", "abc"),
        ("SUBSTRING('abcdef', 6)", "f"),
        ("SUBSTRING('abcdef', -6)", "abcdef"),
        ("SUBSTRING('abcdef', -2, 10)", "ef"),
        ("SUBSTRING('abcdef', 3, 0)", ""),
        ("SUBSTRING('', 0)", ""),
        ("ABS(-2147483647)", 2147483647),
        ("STRING(-0)", "0"),
        ("INT(n) * 2", 4),
    ],
)
def test_builtins(text: str, expected: object) -> None:
    assert run(text) == (expected, [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SUBSTRING('abcdef', 2, -1)", ""),
        ("SUBSTRING('', 1)", ""),
        ("RIGHT(name, -1)", "Ünïcode"),
    ],
)
def test_builtin_failures_still_define_a_value(text: str, expected: object) -> None:
    assert run(text) == (expected, [ErrorKind.FUNCTION_EVALUATION])


def test_argument_cast_failure_yields_zero_of_the_return_type() -> None:
    assert run("LEFT('abc', 'x')") == ("", [ErrorKind.CAST])
    assert run("ABS('x')") == (0, [ErrorKind.CAST])


@pytest.mark.parametrize(
    "text",
    [
        "ABS()",
        "ABS(1, 2)",
        "LENGTH('a', 'b')",
        "SUBSTRING('a')",
        "SUBSTRING('a', 1, 1, 1)",
        "CONCAT_WS()",
        "NOPE(1)",
    ],
)
def test_wrong_arity_or_unknown_name_is_a_missing_function(text: str) -> None:
    assert run(text) == (False, [ErrorKind.MISSING_FUNCTION])
    assert [e.kind for e in parse(text).static_errors] == [ErrorKind.MISSING_FUNCTION]


def test_missing_function_inside_an_expression_yields_the_outer_zero_value() -> None:
    assert run("LENGTH(NOPE())") == (0, [ErrorKind.MISSING_FUNCTION])


# -- user-defined functions ----------------------------------------------------------------------------


def starts_with(s: str, prefix: str) -> bool:
    return s.startswith(prefix)


def test_user_function_is_called_with_cast_arguments() -> None:
    table = BUILTINS.with_functions(Function("STARTS_WITH", (STR, STR), BOOL, starts_with))
    assert run("starts_with(name, 'Ün') AND STARTS_WITH(123, 12)", table) == (True, [])
    assert BUILTINS.resolve("STARTS_WITH", 2) is None  # the shared built-in table is untouched
    assert "starts_with" in table


def test_user_function_failures() -> None:
    def broken(x: int) -> int:
        raise RuntimeError("boom")

    def wrong_type(x: int) -> int:
        return "not an int"  # type: ignore[return-value]

    def too_big(x: int) -> int:
        return 2**40

    def soft_fail(x: int) -> int:
        raise CesqlFunctionError("clamped", 99)

    table = BUILTINS.with_functions(
        Function("BROKEN", (INT,), INT, broken),
        Function("WRONG", (INT,), INT, wrong_type),
        Function("BIG", (INT,), INT, too_big),
        Function("SOFT", (INT,), INT, soft_fail),
    )
    for name in ("BROKEN", "WRONG", "BIG"):
        assert run(f"{name}(1)", table) == (0, [ErrorKind.FUNCTION_EVALUATION])
    assert run("SOFT(1)", table) == (99, [ErrorKind.FUNCTION_EVALUATION])


def test_impure_user_functions_are_called_per_evaluation() -> None:
    calls: list[int] = []

    def tick(x: int) -> int:
        calls.append(x)
        return len(calls)

    table = BUILTINS.with_functions(Function("TICK", (INT,), INT, tick, pure=False))
    expr = parse("TICK(1)", table)
    assert [expr.evaluate({})[0] for _ in range(3)] == [1, 2, 3]


def test_pure_constant_calls_are_computed_once_at_parse_time() -> None:
    calls: list[str] = []

    def shout(s: str) -> str:
        calls.append(s)
        return s.upper()

    table = BUILTINS.with_functions(Function("SHOUT", (STR,), STR, shout))
    expr = parse("SHOUT('a')", table)
    assert [expr.evaluate({})[0] for _ in range(3)] == ["A", "A", "A"]
    assert calls == ["a"]


def test_variadic_user_function() -> None:
    table = FunctionTable([Function("SUM", (INT,), INT, lambda *xs: sum(xs), variadic=INT)])
    assert run("SUM(1, '2', TRUE)", table) == (4, [])
    assert run("SUM()", table) == (False, [ErrorKind.MISSING_FUNCTION])


@pytest.mark.parametrize(
    "functions",
    [
        [Function("F", (STR,), STR, str.upper), Function("f", (INT,), STR, str)],  # same arity twice
        [Function("F", (STR,), STR, str.upper), Function("F", (STR,), STR, str.upper, variadic=STR)],
        [Function("F", (), STR, str, variadic=STR), Function("F", (STR,), STR, str.upper)],
        [Function("F", (STR,), STR, str, variadic=STR), Function("F", (STR, STR), STR, str, variadic=STR)],
    ],
)
def test_ambiguous_overloads_are_rejected(functions: list[Function]) -> None:
    with pytest.raises(ValueError):
        FunctionTable(functions)


def test_overloads_allowed_by_the_spec() -> None:
    table = FunctionTable(
        [
            Function("ABC", (STR,), INT, len),
            Function("ABC", (STR, STR), INT, lambda a, b: len(a + b)),
            Function("ABC", (STR, STR, STR), INT, lambda *xs: -len(xs), variadic=STR),
        ]
    )
    calls = {n: "ABC(" + ", ".join(["'x'"] * n) + ")" for n in (1, 2, 3, 5)}
    assert {n: run(text, table) for n, text in calls.items()} == {
        1: (1, []),
        2: (2, []),
        3: (-3, []),
        5: (-5, []),
    }


@pytest.mark.parametrize("name", ["AND", "1F", "f-g", "", "_X"])
def test_invalid_function_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        Function(name, (), STR, str)


def test_functions_cannot_return_any() -> None:
    with pytest.raises(ValueError):
        Function("F", (), Type.ANY, str)


def test_signature_is_readable() -> None:
    fn = BUILTINS.resolve("concat_ws", 3)
    assert fn is not None
    assert fn.signature == "CONCAT_WS(String, String...) -> String"
