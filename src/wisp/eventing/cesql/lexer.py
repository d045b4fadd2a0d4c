"""Tokenizer for CESQL v1 (mirrors ``CESQLLexer.g4``, with case-insensitive keywords).

Differences from a naive SQL lexer that the grammar dictates:

* a run of ``[A-Za-z0-9_]`` is one *word*; only digits make an integer, a word mixing letters and
  digits is an identifier (``abc1``, even ``1abc``), a word with ``_`` can only name a function;
* integer literals are unsigned here — the parser folds a directly preceding ``-``/``+`` into them, so
  ``-2147483648`` is a valid literal and ``5-3`` still reads as a subtraction;
* inside a string a backslash escapes the closing quote only (``'a\\'b'``); any other backslash is kept,
  so LIKE patterns such as ``'a\\%'`` reach the LIKE operator intact.  ``''`` inside ``'…'`` (and
  ``""`` inside ``"…"``) is accepted as an escaped quote, as the ANTLR lexer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from wisp.eventing.cesql.errors import CesqlParseError


class Tok(Enum):
    """Token kinds."""

    INT = "integer"
    STRING = "string"
    WORD = "word"
    KEYWORD = "keyword"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    OP = "operator"
    EOF = "end of expression"


KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})

# Longest operators first so that "<=" wins over "<".
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%")
_WORD = re.compile(r"[A-Za-z0-9_]+")
_BLANK = frozenset(" \t\r\n")


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme: ``text`` as written, ``value`` decoded (string contents, upper-cased keyword)."""

    kind: Tok
    text: str
    value: str
    pos: int

    def describe(self) -> str:
        """How to name this token in an error message."""
        return self.kind.value if self.kind is Tok.EOF else repr(self.text)


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with an EOF token; raises :class:`CesqlParseError`."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in _BLANK:
            i += 1
            continue
        token = _punctuation(source, i) if ch in "(),!<>=+-*/%" else None
        if token is None:
            token = _string(source, i) if ch in "'\"" else _word(source, i)
        tokens.append(token)
        i += len(token.text)
    tokens.append(Token(Tok.EOF, "", "", n))
    return tokens


def _punctuation(source: str, i: int) -> Token | None:
    ch = source[i]
    if ch == "(":
        return Token(Tok.LPAREN, ch, ch, i)
    if ch == ")":
        return Token(Tok.RPAREN, ch, ch, i)
    if ch == ",":
        return Token(Tok.COMMA, ch, ch, i)
    for op in _OPERATORS:
        if source.startswith(op, i):
            return Token(Tok.OP, op, op, i)
    raise CesqlParseError(f"unexpected character {ch!r}", i)


def _word(source: str, i: int) -> Token:
    m = _WORD.match(source, i)
    if m is None:
        raise CesqlParseError(f"unexpected character {source[i]!r}", i)
    text = m.group()
    if text.isdigit():
        return Token(Tok.INT, text, text, i)
    upper = text.upper()
    if upper in KEYWORDS:
        return Token(Tok.KEYWORD, text, upper, i)
    return Token(Tok.WORD, text, text, i)


def _string(source: str, start: int) -> Token:
    """Scan a quoted literal starting at ``start``; the token text spans both quotes."""
    quote = source[start]
    out: list[str] = []
    i, n = start + 1, len(source)
    while i < n:
        ch = source[i]
        if ch == "\\" and i + 1 < n:
            nxt = source[i + 1]
            out.append(nxt if nxt == quote else ch + nxt)
            i += 2
        elif ch == quote:
            if i + 1 < n and source[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            return Token(Tok.STRING, source[start : i + 1], "".join(out), start)
        else:
            out.append(ch)
            i += 1
    raise CesqlParseError("unterminated string literal", start)
