"""The LIKE operator's matcher (CESQL v1 §3.4.3).

Patterns are compiled once per expression.  Trigger filters are overwhelmingly exact, prefix, suffix or
"contains" tests, so patterns without ``_`` run on ``str`` methods and ``str.find``; only patterns with
``_`` use a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def like_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate for ``x LIKE pattern``: ``%`` any run, ``_`` one character, ``\\%``/``\\_`` literal.

    A backslash before any other character is an ordinary character.  Common filter shapes (exact,
    prefix, suffix, contains) become plain string methods; the rest a precompiled regex.
    """
    parts: list[str | None] = []  # literal text chunks, and None for each '%'
    regex: list[str] = []
    literal: list[str] = []
    has_underscore = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            literal.append(pattern[i + 1])
            i += 2
            continue
        if ch == "%" or ch == "_":
            _flush(literal, parts, regex)
            if ch == "%":
                parts.append(None)
                regex.append(".*")
            else:
                has_underscore = True
                regex.append(".")
        else:
            literal.append(ch)
        i += 1
    _flush(literal, parts, regex)
    if not has_underscore:
        return _fast_matcher(parts)
    compiled = re.compile("".join(regex), re.DOTALL)
    return lambda s: compiled.fullmatch(s) is not None


def _flush(literal: list[str], parts: list[str | None], regex: list[str]) -> None:
    if literal:
        text = "".join(literal)
        parts.append(text)
        regex.append(re.escape(text))
        literal.clear()


def _fast_matcher(parts: list[str | None]) -> Callable[[str], bool]:
    """Match a pattern of literals and ``%`` only, without regular expressions."""
    texts = [p for p in parts if p is not None]
    if not texts:
        return (lambda s: True) if parts else (lambda s: s == "")
    if len(texts) == 1:
        text = texts[0]
        lead, trail = parts[0] is None, parts[-1] is None
        if lead and trail:
            return lambda s: text in s
        if lead:
            return lambda s: s.endswith(text)
        if trail:
            return lambda s: s.startswith(text)
        return lambda s: s == text
    return _segments_matcher(parts)


def _segments_matcher(parts: list[str | None]) -> Callable[[str], bool]:
    head = parts[0] if parts[0] is not None else ""
    tail = parts[-1] if parts[-1] is not None else ""
    middle = [p for p in parts[1:-1] if p is not None]

    def match(s: str) -> bool:
        if len(s) < len(head) + len(tail) or not s.startswith(head) or not s.endswith(tail):
            return False
        pos, end = len(head), len(s) - len(tail)
        for text in middle:  # greedy-leftmost placement is optimal for '%'-only patterns
            found = s.find(text, pos, end)
            if found < 0:
                return False
            pos = found + len(text)
        return True

    return match
