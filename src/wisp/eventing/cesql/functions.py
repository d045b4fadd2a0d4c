"""CESQL functions: the built-ins every engine must provide, and user-defined extensions.

A function is dispatched by upper-cased name and argument count.  Overloads must differ in arity, and
at most one overload per name may be variadic — with more fixed parameters than any other overload has
(CESQL v1 §3.5), so that dispatch by count is never ambiguous.

Implementations receive arguments already cast to the declared parameter types and return a value of
the declared return type.  To fail while still defining a result (as ``LEFT('abc', -1)`` must), they
raise :class:`~wisp.eventing.cesql.errors.CesqlFunctionError` with that result; any other exception
makes the call yield the return type's zero value plus a ``FunctionEvaluationError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from wisp.eventing.cesql.errors import CesqlFunctionError, MathError
from wisp.eventing.cesql.lexer import KEYWORDS
from wisp.eventing.cesql.values import INT32_MAX, INT32_MIN, Type, Value, to_bool, to_int, to_string

Impl = Callable[..., Value]

_NAME = re.compile(r"[A-Z][A-Z_]*")


@dataclass(frozen=True)
class Function:
    """One overload: ``name(params…, variadic…) -> returns``.

    ``variadic`` is the type of a trailing parameter that may repeat zero or more times.
    """

    name: str
    params: tuple[Type, ...]
    returns: Type
    impl: Impl = field(compare=False)
    variadic: Type | None = None
    pure: bool = True
    """Whether calls with constant arguments may be computed once, at parse time."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.upper())
        if _NAME.fullmatch(self.name) is None or self.name in KEYWORDS:
            raise ValueError(f"invalid CESQL function name {self.name!r}")
        if self.returns is Type.ANY:
            raise ValueError(f"{self.name}: a function must return Boolean, Integer or String")

    @property
    def signature(self) -> str:
        """Human-readable form, e.g. ``CONCAT_WS(String, String...) -> String``."""
        parts = [str(t) for t in self.params]
        if self.variadic is not None:
            parts.append(f"{self.variadic}...")
        return f"{self.name}({', '.join(parts)}) -> {self.returns}"

    def param_type(self, index: int) -> Type:
        """Declared type of argument ``index`` (variadic tail included)."""
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


class FunctionTable:
    """An immutable set of function overloads, resolved by name and argument count."""

    def __init__(self, functions: Iterable[Function] = ()) -> None:
        self._fixed: dict[str, dict[int, Function]] = {}
        self._variadic: dict[str, Function] = {}
        for fn in functions:
            self._add(fn)

    def with_functions(self, *functions: Function) -> FunctionTable:
        """A new table with these overloads added; raises ``ValueError`` if one clashes."""
        return FunctionTable([*self, *functions])

    def resolve(self, name: str, argc: int) -> Function | None:
        """The overload of ``name`` taking ``argc`` arguments, or ``None``."""
        key = name.upper()
        fn = self._fixed.get(key, {}).get(argc)
        if fn is not None:
            return fn
        var = self._variadic.get(key)
        return var if var is not None and argc >= len(var.params) else None

    def __iter__(self) -> Iterator[Function]:
        for overloads in self._fixed.values():
            yield from overloads.values()
        yield from self._variadic.values()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name.upper() in self._fixed or name.upper() in self._variadic)

    def _add(self, fn: Function) -> None:
        fixed = self._fixed.setdefault(fn.name, {})
        var = self._variadic.get(fn.name)
        if fn.variadic is None:
            if len(fn.params) in fixed:
                raise ValueError(f"{fn.signature}: an overload with {len(fn.params)} arguments exists")
            if var is not None and len(fn.params) >= len(var.params):
                raise ValueError(f"{fn.signature}: clashes with variadic {var.signature}")
            fixed[len(fn.params)] = fn
            return
        if var is not None:
            raise ValueError(f"{fn.signature}: {fn.name} already has a variadic overload")
        if fixed and len(fn.params) <= max(fixed):
            raise ValueError(
                f"{fn.signature}: a variadic overload needs more fixed parameters than "
                f"the other overloads of {fn.name} take"
            )
        self._variadic[fn.name] = fn


# -- built-ins ----------------------------------------------------------------------------------------


def _left(s: str, n: int) -> str:
    if n < 0:
        raise CesqlFunctionError(f"LEFT: negative length {n}", s)
    return s[:n]


def _right(s: str, n: int) -> str:
    if n < 0:
        raise CesqlFunctionError(f"RIGHT: negative length {n}", s)
    return s[len(s) - n :] if n < len(s) else s


def _substring(s: str, pos: int, length: int | None = None) -> str:
    n = len(s)
    if pos > n or pos < -n:
        raise CesqlFunctionError(f"SUBSTRING: position {pos} is outside a string of length {n}", "")
    if length is not None and length < 0:
        raise CesqlFunctionError(f"SUBSTRING: negative length {length}", "")
    if pos == 0:
        return ""
    start = pos - 1 if pos > 0 else n + pos
    return s[start:] if length is None else s[start : start + length]


def _abs(x: int) -> int:
    if x == INT32_MIN:
        # |-2^31| does not fit in 32 bits; the spec pins the result to the largest Integer.
        raise CesqlFunctionError("ABS: result overflows a 32-bit integer", INT32_MAX, MathError)
    return abs(x)


_S, _I, _B, _ANY = Type.STRING, Type.INTEGER, Type.BOOLEAN, Type.ANY

BUILTINS = FunctionTable(
    [
        Function("LENGTH", (_S,), _I, len),
        Function("CONCAT", (), _S, lambda *xs: "".join(xs), variadic=_S),
        Function("CONCAT_WS", (_S,), _S, lambda sep, *xs: sep.join(xs), variadic=_S),
        Function("LOWER", (_S,), _S, str.lower),
        Function("UPPER", (_S,), _S, str.upper),
        Function("TRIM", (_S,), _S, str.strip),  # str.strip() trims all Unicode whitespace
        Function("LEFT", (_S, _I), _S, _left),
        Function("RIGHT", (_S, _I), _S, _right),
        Function("SUBSTRING", (_S, _I), _S, _substring),
        Function("SUBSTRING", (_S, _I, _I), _S, _substring),
        Function("ABS", (_I,), _I, _abs),
        Function("INT", (_ANY,), _I, to_int),
        Function("BOOL", (_ANY,), _B, to_bool),
        Function("STRING", (_ANY,), _S, to_string),
    ]
)
"""The built-in functions of CESQL v1, plus the casting functions ``INT``, ``BOOL`` and ``STRING``."""
