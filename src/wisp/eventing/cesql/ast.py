"""Syntax tree of a parsed CESQL expression.

The parser builds these immutable nodes; the evaluator compiles them once into a tree of small
evaluation objects.  Keeping the syntax tree separate lets tooling (API validation, the dashboard)
inspect an expression — which attributes and functions it uses — without evaluating it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from wisp.eventing.cesql.values import Value


@dataclass(frozen=True, slots=True)
class Node:
    """Base class; ``pos`` is the offset of the node's first character in the source text."""

    pos: int

    def children(self) -> tuple[Node, ...]:
        """Direct sub-expressions, left to right."""
        return ()

    def walk(self) -> Iterator[Node]:
        """This node and all nodes below it, depth first."""
        stack: list[Node] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """``TRUE``, ``42``, ``'text'``."""

    value: Value


@dataclass(frozen=True, slots=True)
class Identifier(Node):
    """A context attribute or extension, by its (lower-cased) name."""

    name: str


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """``NOT x`` (op ``"NOT"``) or ``-x`` (op ``"-"``)."""

    op: str
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic, comparison and logic operators; ``op`` is upper-cased (``"AND"``, ``"<="``)."""

    op: str
    left: Node
    right: Node

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class Like(Node):
    """``x [NOT] LIKE 'pattern'``; the pattern is always a string literal."""

    operand: Node
    pattern: str
    negated: bool

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Exists(Node):
    """``EXISTS name``."""

    name: str


@dataclass(frozen=True, slots=True)
class In(Node):
    """``x [NOT] IN (e1, e2, …)`` with a non-empty set."""

    operand: Node
    items: tuple[Node, ...]
    negated: bool

    def children(self) -> tuple[Node, ...]:
        return (self.operand, *self.items)


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``NAME(arg, …)``; ``name`` is upper-cased since function names are case-insensitive."""

    name: str
    args: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.args
