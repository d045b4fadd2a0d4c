"""Pratt parser for CESQL v1, following the precedence of ``CESQLParser.g4``.

Binding strength, tightest first: function call; ``NOT``; unary ``-``; ``LIKE``; ``EXISTS`` (an atom);
``IN``; ``* / %``; ``+ -``; comparisons; ``AND OR XOR``.  The last three logic operators share one
level and associate to the *right*, as in the reference grammar (and hence in Knative's Go engine):
``a AND b OR c`` means ``a AND (b OR c)``.  Everything else associates to the left.

Nesting is capped at :data:`MAX_DEPTH` so hostile input cannot exhaust the interpreter stack either
here or later in the recursive evaluator.
"""

from __future__ import annotations

import re
from typing import Final

from wisp.eventing.cesql.ast import Binary, Call, Exists, Identifier, In, Like, Literal, Node, Unary
from wisp.eventing.cesql.errors import CesqlParseError
from wisp.eventing.cesql.lexer import Tok, Token, tokenize
from wisp.eventing.cesql.values import INT32_MAX, INT32_MIN

MAX_DEPTH: Final = 200

_LOGIC_BP: Final = (11, 10)  # right-associative
_INFIX_BP: Final[dict[str, tuple[int, int]]] = {
    "AND": _LOGIC_BP,
    "OR": _LOGIC_BP,
    "XOR": _LOGIC_BP,
    **dict.fromkeys(("=", "!=", "<>", "<", "<=", ">", ">="), (20, 21)),
    **dict.fromkeys(("+", "-"), (30, 31)),
    **dict.fromkeys(("*", "/", "%"), (40, 41)),
}
_IN_BP: Final = 50
_LIKE_BP: Final = 60
_MINUS_BP: Final = 70
_NOT_BP: Final = 80

_FUNCTION_NAME = re.compile(r"[A-Za-z][A-Za-z_]*")
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+")


def parse_ast(source: str) -> Node:
    """Parse CESQL text into a syntax tree; raises :class:`CesqlParseError` on any invalid input."""
    if not isinstance(source, str):
        raise CesqlParseError(f"expression must be a string, not {type(source).__name__}", 0)
    return _Parser(tokenize(source)).parse()


class _Parser:
    """Recursive-descent/Pratt parser over a token list; returns ``(node, depth)`` pairs internally."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._nesting = 0

    def parse(self) -> Node:
        if self._peek().kind is Tok.EOF:
            raise CesqlParseError("empty expression", 0)
        node, _ = self._expr(0)
        self._expect(Tok.EOF)
        return node

    # -- token helpers -------------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._i + ahead, len(self._tokens) - 1)]

    def _advance(self) -> Token:
        tok = self._tokens[self._i]
        if tok.kind is not Tok.EOF:
            self._i += 1
        return tok

    def _expect(self, kind: Tok, what: str | None = None) -> Token:
        tok = self._peek()
        if tok.kind is not kind:
            raise CesqlParseError(f"expected {what or kind.value}, found {tok.describe()}", tok.pos)
        return self._advance()

    @staticmethod
    def _is_keyword(tok: Token, *names: str) -> bool:
        return tok.kind is Tok.KEYWORD and tok.value in names

    # -- expressions ---------------------------------------------------------------------------------

    def _expr(self, min_bp: int) -> tuple[Node, int]:
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise CesqlParseError(f"expression nested deeper than {MAX_DEPTH} levels", self._peek().pos)
        left, depth = self._prefix()
        while True:
            step = self._suffix(left, depth, min_bp)
            if step is None:
                break
            left, depth = step
            if depth > MAX_DEPTH:
                raise CesqlParseError(f"expression nested deeper than {MAX_DEPTH} levels", left.pos)
        self._nesting -= 1
        return left, depth

    def _suffix(self, left: Node, depth: int, min_bp: int) -> tuple[Node, int] | None:
        """Extend ``left`` with one infix/postfix operator binding at least ``min_bp``, if present."""
        tok = self._peek()
        negated = self._is_keyword(tok, "NOT")
        op_tok = self._peek(1) if negated else tok
        if self._is_keyword(op_tok, "LIKE", "IN"):
            if (_LIKE_BP if op_tok.value == "LIKE" else _IN_BP) < min_bp:
                return None
            self._i += 2 if negated else 1
            if op_tok.value == "LIKE":
                return Like(left.pos, left, self._like_pattern(), negated), depth + 1
            items, item_depth = self._list(Tok.LPAREN, allow_empty=False)
            return In(left.pos, left, items, negated), max(depth, item_depth) + 1
        if negated:
            raise CesqlParseError(f"expected LIKE or IN after NOT, found {op_tok.describe()}", op_tok.pos)
        op = tok.value if tok.kind in (Tok.OP, Tok.KEYWORD) else None
        bp = _INFIX_BP.get(op) if op is not None else None
        if bp is None or bp[0] < min_bp:
            return None
        self._advance()
        right, right_depth = self._expr(bp[1])
        return Binary(left.pos, str(op), left, right), max(depth, right_depth) + 1

    def _prefix(self) -> tuple[Node, int]:
        tok = self._advance()
        kind = tok.kind
        if kind is Tok.INT:
            return self._integer(tok, tok.text, tok.pos), 1
        if kind is Tok.STRING:
            return Literal(tok.pos, tok.value), 1
        if kind is Tok.LPAREN:
            node, depth = self._expr(0)
            self._expect(Tok.RPAREN)
            return node, depth
        if kind is Tok.WORD:
            return self._word(tok)
        if kind is Tok.KEYWORD:
            return self._keyword_prefix(tok)
        if kind is Tok.OP and tok.value in ("+", "-"):
            return self._sign(tok)
        raise CesqlParseError(f"unexpected {tok.describe()}", tok.pos)

    def _keyword_prefix(self, tok: Token) -> tuple[Node, int]:
        if tok.value in ("TRUE", "FALSE"):
            return Literal(tok.pos, tok.value == "TRUE"), 1
        if tok.value == "NOT":
            operand, depth = self._expr(_NOT_BP)
            return Unary(tok.pos, "NOT", operand), depth + 1
        if tok.value == "EXISTS":
            name = self._expect(Tok.WORD, "an attribute name")
            if _IDENTIFIER.fullmatch(name.text) is None:
                raise CesqlParseError(f"invalid attribute name {name.text!r}", name.pos)
            return Exists(tok.pos, name.text.lower()), 1
        raise CesqlParseError(f"unexpected keyword {tok.text!r}", tok.pos)

    def _sign(self, tok: Token) -> tuple[Node, int]:
        nxt = self._peek()
        # A sign glued to digits is part of the literal (the grammar's INTEGER_LITERAL is signed).
        if nxt.kind is Tok.INT and nxt.pos == tok.pos + 1:
            self._advance()
            return self._integer(tok, tok.value + nxt.text, tok.pos), 1
        if tok.value == "+":
            raise CesqlParseError("unary '+' is only allowed as the sign of an integer literal", tok.pos)
        operand, depth = self._expr(_MINUS_BP)
        return Unary(tok.pos, "-", operand), depth + 1

    @staticmethod
    def _integer(tok: Token, text: str, pos: int) -> Literal:
        value = int(text)
        if not INT32_MIN <= value <= INT32_MAX:
            raise CesqlParseError(f"integer literal {text} is outside the 32-bit range", pos)
        return Literal(pos, value)

    def _word(self, tok: Token) -> tuple[Node, int]:
        if self._peek().kind is Tok.LPAREN:
            if _FUNCTION_NAME.fullmatch(tok.text) is None:
                raise CesqlParseError(f"invalid function name {tok.text!r}", tok.pos)
            args, depth = self._list(Tok.LPAREN, allow_empty=True)
            return Call(tok.pos, tok.text.upper(), args), depth + 1
        if _IDENTIFIER.fullmatch(tok.text) is None:
            raise CesqlParseError(f"invalid attribute name {tok.text!r}", tok.pos)
        return Identifier(tok.pos, tok.text.lower()), 1

    def _list(self, opener: Tok, *, allow_empty: bool) -> tuple[tuple[Node, ...], int]:
        """Parse ``( expr, … )`` for call arguments and IN sets."""
        self._expect(opener)
        items: list[Node] = []
        depth = 0
        if allow_empty and self._peek().kind is Tok.RPAREN:
            self._advance()
            return (), depth
        while True:
            node, node_depth = self._expr(0)
            items.append(node)
            depth = max(depth, node_depth)
            if self._peek().kind is not Tok.COMMA:
                break
            self._advance()
        self._expect(Tok.RPAREN, "',' or ')'")
        return tuple(items), depth

    def _like_pattern(self) -> str:
        tok = self._peek()
        if tok.kind is not Tok.STRING:
            raise CesqlParseError(f"LIKE needs a string literal pattern, found {tok.describe()}", tok.pos)
        self._advance()
        return tok.value
