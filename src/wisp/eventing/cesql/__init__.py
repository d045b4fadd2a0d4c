"""CloudEvents SQL (CESQL v1.0.0): parse once, evaluate per event.

>>> expr = parse("type = 'com.example' AND source LIKE 'https://%'")
>>> expr.matches({"specversion": "1.0", "id": "1", "type": "com.example", "source": "https://a"})
True

``parse`` raises :class:`CesqlParseError` for invalid text; every other problem (a missing attribute,
a failed cast, division by zero, an unknown function) is *returned* by ``Expression.evaluate`` next to
the value, as the spec requires.  ``Expression.matches`` is the Trigger-filter view: errors never match.
"""

from __future__ import annotations

from wisp.eventing.cesql.errors import (
    CastError,
    CesqlError,
    CesqlFunctionError,
    CesqlParseError,
    ErrorKind,
    FunctionEvaluationError,
    GenericError,
    MathError,
    MissingAttributeError,
    MissingFunctionError,
)
from wisp.eventing.cesql.evaluator import REQUIRED_ATTRIBUTES, Expression
from wisp.eventing.cesql.functions import BUILTINS, Function, FunctionTable
from wisp.eventing.cesql.like import like_matcher
from wisp.eventing.cesql.parser import MAX_DEPTH, parse_ast
from wisp.eventing.cesql.values import Type, Value

__all__ = [
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


def parse(source: str, functions: FunctionTable = BUILTINS) -> Expression:
    """Parse and compile ``source``; ``functions`` adds user-defined functions to the built-ins.

    Raises :class:`CesqlParseError` (with the offending position) if the text is not valid CESQL.
    """
    return Expression(source, parse_ast(source), functions)
