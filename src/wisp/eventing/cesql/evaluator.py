"""Compile a CESQL syntax tree into evaluation objects, and the :class:`Expression` users hold.

Evaluation is *fail-fast* (CESQL v1 §4.1, what the TCK and Knative filters use): the first error stops
evaluation and the expression yields the zero value of its own return type together with that error —
unless the error was raised by the outermost node itself, which defines its own result
(``LEFT('abc', -1)`` is ``'abc'``, ``ABS(-2147483648)`` is ``2147483647``, ``NOT 10`` is ``true``).

Errors travel as a private exception, so the error-free path — the one every delivered event takes —
runs plain method calls with no result tuples.  Sub-trees made only of constants are computed once at
compile time, and LIKE patterns become ``str`` methods or a precompiled regex.

Implicit casts follow §3.7: operators with one signature cast their operands to it; for ``=``/``!=``/
``<>`` the right operand's type picks the overload and the left one is cast; ``IN`` casts the set
elements to the left operand's type.  Two choices the spec leaves open, pinned here:

* Integer results outside the 32-bit range (``2147483647 + 1``, ``-(-2147483648)``) saturate to the
  nearest bound and report a ``MathError``, mirroring the spec's rule for ``ABS(-2147483648)``.
* ``NOT`` applied to an Integer reports a ``CastError`` and treats the operand as ``false`` (so the
  result is ``true``), as the conformance TCK requires; elsewhere Integer→Boolean casts succeed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from wisp.eventing.cesql import ast
from wisp.eventing.cesql.errors import (
    CastError,
    CesqlError,
    CesqlFunctionError,
    FunctionEvaluationError,
    MathError,
    MissingAttributeError,
    MissingFunctionError,
)
from wisp.eventing.cesql.functions import BUILTINS, Function, FunctionTable
from wisp.eventing.cesql.like import like_matcher
from wisp.eventing.cesql.values import (
    INT32_MAX,
    INT32_MIN,
    Type,
    Value,
    cast,
    from_event,
    to_bool,
    to_int,
    to_string,
    type_of,
    zero_of,
)

Event = Mapping[str, Any]

REQUIRED_ATTRIBUTES = frozenset({"specversion", "id", "source", "type"})
# CESQL has no access to event data, whatever key the caller's mapping uses for it.
_NOT_ATTRIBUTES = frozenset({"data", "data_base64"})


class _Fail(Exception):
    """Internal: aborts evaluation with ``error``; ``value`` is the result ``origin`` defines, if any."""

    __slots__ = ("error", "origin", "value")

    def __init__(self, error: CesqlError, origin: _Node | None = None, value: Value | None = None) -> None:
        self.error = error
        self.origin = origin
        self.value = value


def _cast(v: Value, target: Type) -> Value:
    try:
        return cast(v, target)
    except CastError as err:
        raise _Fail(err) from None


def _int(v: Value) -> int:
    if type(v) is int:
        return v
    try:
        return to_int(v)
    except CastError as err:
        raise _Fail(err) from None


def _bool(v: Value) -> bool:
    if type(v) is bool:
        return v
    try:
        return to_bool(v)
    except CastError as err:
        raise _Fail(err) from None


# -- compiled nodes -----------------------------------------------------------------------------------


class _Node:
    """A compiled expression: ``ev(event)`` returns its value or raises :class:`_Fail`."""

    __slots__ = ("type",)

    def __init__(self, type_: Type | None) -> None:
        self.type = type_  # static result type; None when it depends on the event (attributes)

    def ev(self, event: Event) -> Value:
        raise NotImplementedError


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        super().__init__(type_of(value))
        self.value = value

    def ev(self, event: Event) -> Value:
        return self.value


class _Attr(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(None)
        self.name = name

    def ev(self, event: Event) -> Value:
        raw = event.get(self.name) if self.name not in _NOT_ATTRIBUTES else None
        if type(raw) is str or type(raw) is bool:
            return raw  # type: ignore[no-any-return,unused-ignore]
        v = from_event(raw)
        if v is None:
            raise _Fail(MissingAttributeError(f"missing attribute {self.name!r}"), self, False)
        return v


class _Exists(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__(Type.BOOLEAN)
        self.name = name

    def ev(self, event: Event) -> Value:
        if self.name in REQUIRED_ATTRIBUTES:
            return True  # the input is assumed to be a valid CloudEvent
        return self.name not in _NOT_ATTRIBUTES and event.get(self.name) is not None


class _Not(_Node):
    __slots__ = ("operand",)

    def __init__(self, operand: _Node) -> None:
        super().__init__(Type.BOOLEAN)
        self.operand = operand

    def ev(self, event: Event) -> Value:
        v = self.operand.ev(event)
        if type(v) is bool:
            return not v
        if type(v) is not int:
            try:
                return not to_bool(v)
            except CastError as err:
                raise _Fail(err, self, True) from None
        raise _Fail(CastError(f"NOT needs a Boolean, got Integer {v}"), self, True)


def _saturate(n: int, node: _Node) -> int:
    if INT32_MIN <= n <= INT32_MAX:
        return n
    bound = INT32_MAX if n > 0 else INT32_MIN
    raise _Fail(MathError(f"integer overflow: {n} is outside the 32-bit range"), node, bound)


class _Neg(_Node):
    __slots__ = ("operand",)

    def __init__(self, operand: _Node) -> None:
        super().__init__(Type.INTEGER)
        self.operand = operand

    def ev(self, event: Event) -> Value:
        return _saturate(-_int(self.operand.ev(event)), self)


def _divide(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


_ARITH: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    "%": lambda a, b: a - b * _divide(a, b),  # truncated: the remainder takes the dividend's sign
}


class _Arith(_Node):
    __slots__ = ("left", "op", "right", "symbol")

    def __init__(self, symbol: str, left: _Node, right: _Node) -> None:
        super().__init__(Type.INTEGER)
        self.symbol, self.op, self.left, self.right = symbol, _ARITH[symbol], left, right

    def ev(self, event: Event) -> Value:
        a, b = self.left.ev(event), self.right.ev(event)
        x, y = _int(a), _int(b)
        if y == 0 and self.symbol in ("/", "%"):
            raise _Fail(MathError(f"division by zero in {x} {self.symbol} 0"), self, 0)
        return _saturate(self.op(x, y), self)


_ORDER: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Order(_Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, symbol: str, left: _Node, right: _Node) -> None:
        super().__init__(Type.BOOLEAN)
        self.op, self.left, self.right = _ORDER[symbol], left, right

    def ev(self, event: Event) -> Value:
        a, b = self.left.ev(event), self.right.ev(event)
        return self.op(_int(a), _int(b))


class _Equals(_Node):
    __slots__ = ("left", "negated", "right")

    def __init__(self, negated: bool, left: _Node, right: _Node) -> None:
        super().__init__(Type.BOOLEAN)
        self.negated, self.left, self.right = negated, left, right

    def ev(self, event: Event) -> Value:
        a, b = self.left.ev(event), self.right.ev(event)
        if type(a) is not type(b):
            a = _cast(a, type_of(b))  # the right operand picks the overload (§3.7)
        return (a == b) is not self.negated


class _And(_Node):
    __slots__ = ("left", "right")

    def __init__(self, left: _Node, right: _Node) -> None:
        super().__init__(Type.BOOLEAN)
        self.left, self.right = left, right

    def ev(self, event: Event) -> Value:
        return _bool(self.left.ev(event)) and _bool(self.right.ev(event))


class _Or(_And):
    __slots__ = ()

    def ev(self, event: Event) -> Value:
        return _bool(self.left.ev(event)) or _bool(self.right.ev(event))


class _Xor(_And):
    __slots__ = ()

    def ev(self, event: Event) -> Value:
        return _bool(self.left.ev(event)) is not _bool(self.right.ev(event))


class _Like(_Node):
    __slots__ = ("match", "negated", "operand")

    def __init__(self, operand: _Node, pattern: str, negated: bool) -> None:
        super().__init__(Type.BOOLEAN)
        self.operand, self.match, self.negated = operand, like_matcher(pattern), negated

    def ev(self, event: Event) -> Value:
        return self.match(to_string(self.operand.ev(event))) is not self.negated


class _In(_Node):
    __slots__ = ("items", "negated", "operand", "sets")

    def __init__(self, operand: _Node, items: list[_Node], negated: bool) -> None:
        super().__init__(Type.BOOLEAN)
        self.operand, self.items, self.negated = operand, items, negated
        self.sets = _constant_sets(items)

    def ev(self, event: Event) -> Value:
        x = self.operand.ev(event)
        members = self.sets.get(type(x))
        if members is not None:
            return (x in members) is not self.negated
        target = type_of(x)
        for item in self.items:
            y = item.ev(event)
            if type(y) is not type(x):
                y = _cast(y, target)  # the left operand's type is the target (§3.7)
            if y == x:
                return not self.negated
        return self.negated


def _constant_sets(items: list[_Node]) -> dict[type, frozenset[Value]]:
    """Per left-operand type, the set's members pre-cast — when every member is a constant that casts."""
    if not all(isinstance(i, _Const) for i in items):
        return {}
    values = [i.value for i in items if isinstance(i, _Const)]
    sets: dict[type, frozenset[Value]] = {}
    for py_type, target in ((str, Type.STRING), (int, Type.INTEGER), (bool, Type.BOOLEAN)):
        # On a failed cast, fall back to in-order evaluation so the error surfaces when reached.
        with contextlib.suppress(CastError):
            sets[py_type] = frozenset(cast(v, target) for v in values)
    return sets


class _Call(_Node):
    __slots__ = ("args", "fn", "impl", "params")

    def __init__(self, fn: Function, args: list[_Node]) -> None:
        super().__init__(fn.returns)
        self.fn, self.impl, self.args = fn, fn.impl, args
        self.params = [fn.param_type(i) for i in range(len(args))]

    def ev(self, event: Event) -> Value:
        values = [a.ev(event) for a in self.args]
        for i, t in enumerate(self.params):
            if t is not Type.ANY and type_of(values[i]) is not t:
                values[i] = _cast(values[i], t)
        try:
            result = self.impl(*values)
        except CesqlFunctionError as exc:
            raise _Fail(exc.error_type(exc.message), self, self._conform(exc.value)) from None
        except CesqlError as err:
            raise _Fail(err) from None
        except Exception as exc:  # a user function failed without defining a result
            raise _Fail(FunctionEvaluationError(f"{self.fn.name}: {exc}")) from None
        if self._conform(result) is None:
            raise _Fail(FunctionEvaluationError(f"{self.fn.name} returned {result!r}, not {self.type}"))
        return result

    def _conform(self, value: object) -> Value | None:
        """``value`` if it is a CESQL value of the declared return type, else ``None``."""
        if not isinstance(value, str | int) or type(value) not in (str, int, bool):
            return None
        if type_of(value) is not self.type:
            return None
        if type(value) is int and not INT32_MIN <= value <= INT32_MAX:
            return None
        return value


class _MissingFunction(_Node):
    __slots__ = ("error",)

    def __init__(self, error: MissingFunctionError) -> None:
        super().__init__(None)
        self.error = error

    def ev(self, event: Event) -> Value:
        raise _Fail(self.error, self, False)


# -- compiler -----------------------------------------------------------------------------------------


class _Compiler:
    """Turns a syntax tree into evaluation nodes, resolving functions against one table."""

    def __init__(self, functions: FunctionTable) -> None:
        self.functions = functions
        self.static_errors: list[CesqlError] = []

    def compile(self, node: ast.Node) -> _Node:
        """Compile ``node`` bottom-up, folding constant sub-trees as soon as they are built."""
        return self._fold(self._build(node))

    def _build(self, node: ast.Node) -> _Node:
        if isinstance(node, ast.Literal):
            return _Const(node.value)
        if isinstance(node, ast.Identifier):
            return _Attr(node.name)
        if isinstance(node, ast.Exists):
            return _Exists(node.name)
        if isinstance(node, ast.Unary):
            operand = self.compile(node.operand)
            return _Not(operand) if node.op == "NOT" else _Neg(operand)
        if isinstance(node, ast.Binary):
            return self._binary(node)
        if isinstance(node, ast.Like):
            return _Like(self.compile(node.operand), node.pattern, node.negated)
        if isinstance(node, ast.In):
            return _In(self.compile(node.operand), [self.compile(i) for i in node.items], node.negated)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise TypeError(f"unknown CESQL node {node!r}")

    def _binary(self, node: ast.Binary) -> _Node:
        left, right = self.compile(node.left), self.compile(node.right)
        op = node.op
        if op in _ARITH:
            return _Arith(op, left, right)
        if op in _ORDER:
            return _Order(op, left, right)
        if op in ("=", "!=", "<>"):
            return _Equals(op != "=", left, right)
        return {"AND": _And, "OR": _Or, "XOR": _Xor}[op](left, right)

    def _call(self, node: ast.Call) -> _Node:
        fn = self.functions.resolve(node.name, len(node.args))
        if fn is None:
            error = MissingFunctionError(f"no function {node.name} taking {len(node.args)} argument(s)")
            self.static_errors.append(error)
            return _MissingFunction(error)
        return _Call(fn, [self.compile(a) for a in node.args])

    @staticmethod
    def _fold(compiled: _Node) -> _Node:
        """Replace an error-free, event-independent sub-tree by its value."""
        if isinstance(compiled, _Const | _Attr | _Exists | _MissingFunction):
            return compiled
        if isinstance(compiled, _Call) and not compiled.fn.pure:
            return compiled
        if not all(isinstance(c, _Const) for c in _children(compiled)):
            return compiled
        try:
            return _Const(compiled.ev({}))
        except _Fail:
            return compiled  # keep it, so the error is reported at evaluation like any other


def _children(n: _Node) -> list[_Node]:
    if isinstance(n, _Not | _Neg | _Like):
        return [n.operand]
    if isinstance(n, _Arith | _Order | _Equals | _And):
        return [n.left, n.right]
    if isinstance(n, _In):
        return [n.operand, *n.items]
    if isinstance(n, _Call):
        return list(n.args)
    return []


# -- public ---------------------------------------------------------------------------------------------


class Expression:
    """A parsed, compiled CESQL expression; immutable and safe to share between tasks and threads."""

    __slots__ = ("_root", "_zero", "ast", "source", "static_errors")

    def __init__(self, source: str, tree: ast.Node, functions: FunctionTable = BUILTINS) -> None:
        compiler = _Compiler(functions)
        self.source = source
        self.ast = tree
        self._root = compiler.compile(tree)
        self._zero = zero_of(self._root.type)
        self.static_errors: tuple[CesqlError, ...] = tuple(compiler.static_errors)
        """Errors certain to occur on every evaluation (unknown functions), for validation warnings."""

    def evaluate(self, event: Event | None) -> tuple[Value, list[CesqlError]]:
        """Evaluate against an event's attributes; returns the value and the (fail-fast) error list."""
        try:
            return self._root.ev(event if event is not None else {}), []
        except _Fail as fail:
            # The outermost node defines its own result on error; any deeper failure yields its zero.
            own = fail.value if fail.origin is self._root else None
            return (own if own is not None else self._zero), [fail.error]

    def matches(self, event: Event | None) -> bool:
        """Trigger-filter semantics: ``True`` only for an error-free result that casts to ``true``."""
        try:
            v = self._root.ev(event if event is not None else {})
        except _Fail:
            return False
        if type(v) is bool:
            return v
        try:
            return to_bool(v)
        except CastError:
            return False

    @property
    def result_type(self) -> Type | None:
        """The static result type, or ``None`` when it is that of an event attribute."""
        return self._root.type

    def attributes(self) -> frozenset[str]:
        """Names of the event attributes the expression reads (including under ``EXISTS``)."""
        return frozenset(n.name for n in self.ast.walk() if isinstance(n, ast.Identifier | ast.Exists))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"
