"""CESQL error tree.

The spec makes every operator and function total: evaluation always yields a value, and problems are
reported *alongside* it as an error list.  The error categories are normative (a TCK checks them), so
each one is its own class carrying a machine-readable :class:`ErrorKind`.  Parse errors are the only
ones that are raised to callers; all others are returned by ``Expression.evaluate``.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """The error categories every CESQL engine must distinguish (CESQL v1 §3.3)."""

    PARSE = "parse"
    MATH = "math"
    CAST = "cast"
    MISSING_ATTRIBUTE = "missing_attribute"
    MISSING_FUNCTION = "missing_function"
    FUNCTION_EVALUATION = "function_evaluation"
    GENERIC = "generic"


class CesqlError(Exception):
    """Base of all CESQL errors; ``kind`` says which spec category it belongs to."""

    kind: ErrorKind = ErrorKind.GENERIC

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __eq__(self, other: object) -> bool:
        # Errors are values in an error list; two lists compare equal when they report the same things.
        return isinstance(other, CesqlError) and type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class CesqlParseError(CesqlError):
    """The expression text is not valid CESQL; ``position`` is the 0-based character offset."""

    kind = ErrorKind.PARSE

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position

    def __str__(self) -> str:
        return f"{self.message} (at position {self.position})"

    def __reduce__(self) -> tuple[type[CesqlParseError], tuple[str, int]]:
        return (type(self), (self.message, self.position))


class MathError(CesqlError):
    """Division or modulo by zero, or a result outside the 32-bit integer range."""

    kind = ErrorKind.MATH


class CastError(CesqlError):
    """A value could not be converted to the type an operator or function needs."""

    kind = ErrorKind.CAST


class MissingAttributeError(CesqlError):
    """The expression addressed an attribute the event does not carry."""

    kind = ErrorKind.MISSING_ATTRIBUTE


class MissingFunctionError(CesqlError):
    """No function with this name accepts this number of arguments."""

    kind = ErrorKind.MISSING_FUNCTION


class FunctionEvaluationError(CesqlError):
    """A function rejected its arguments (e.g. ``LEFT('abc', -1)``) or a user function failed."""

    kind = ErrorKind.FUNCTION_EVALUATION


class GenericError(CesqlError):
    """Anything that fits no other category."""

    kind = ErrorKind.GENERIC


class CesqlFunctionError(Exception):
    """Raised by a function implementation that fails but still defines a result.

    The spec requires functions to return a value even when they report an error (``LEFT('abc', -2)``
    returns ``'abc'`` *and* an error).  An implementation raises this with that value; the evaluator turns
    it into a :class:`FunctionEvaluationError` (or ``error_type``, e.g. :class:`MathError` for ``ABS``).
    """

    def __init__(
        self, message: str, value: object = None, error_type: type[CesqlError] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.error_type: type[CesqlError] = error_type or FunctionEvaluationError
