"""LIKE patterns: wildcards, escaping, and the fast paths agreeing with a reference matcher."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wisp.eventing.cesql import like_matcher, parse


def reference_like(value: str, pattern: str) -> bool:
    """A deliberately naive dynamic-programming LIKE, written straight from the spec's wording."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            tokens.append(("lit", pattern[i + 1]))
            i += 2
            continue
        kind = {"%": "any", "_": "one"}.get(pattern[i], "lit")
        tokens.append((kind, pattern[i]))
        i += 1

    @cache
    def match(t: int, v: int) -> bool:
        if t == len(tokens):
            return v == len(value)
        kind, ch = tokens[t]
        if kind == "any":
            return match(t + 1, v) or (v < len(value) and match(t, v + 1))
        if v == len(value):
            return False
        return (kind == "one" or value[v] == ch) and match(t + 1, v + 1)

    return match(0, 0)


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("a%", "a\\%", True),
        ("ab", "a\\%", False),
        ("a_", "a\\_", True),
        ("ab", "a\\_", False),
        ("a\\b", "a\\b", True),  # a backslash before an ordinary character is literal
        ("a\\", "a\\", True),  # a trailing backslash is literal
        ("a\\xyz", "a\\%", False),
        ("a\\%", "a\\\\%", True),  # backslash, then an escaped '%'
        ("", "%", True),
        ("", "", True),
        ("x", "", False),
        ("", "_", False),
        ("é", "_", True),  # one character, not one byte
        ("line\nbreak", "line_break", True),
        ("line\nbreak", "line%", True),
        ("abcabc", "a%c%c", True),
        ("abcab", "a%c%c", False),
        ("aXbXc", "a%b%c", True),
        ("Abc", "a%", False),  # matching is case-sensitive
        ("a.*b", "a.*b", True),  # regex metacharacters are literal
        ("axxb", "a.*b", False),
        ("abc", "%%%", True),
        ("ab", "a%b%", True),
        ("aab", "%ab", True),
        ("aba", "%b%", True),
        ("aa", "a%a%a", False),
    ],
)
def test_like_cases(value: str, pattern: str, expected: bool) -> None:
    assert like_matcher(pattern)(value) is expected
    assert reference_like(value, pattern) is expected


def test_like_through_expressions() -> None:
    # Inside a CESQL string literal, '\\' stays two characters, so the pattern sees '\\' + '%'.
    assert parse("'50%' LIKE '50\\%'").evaluate({}) == (True, [])
    assert parse("'50x' LIKE '50\\%'").evaluate({}) == (False, [])
    assert parse("type NOT LIKE 'com.%.created'").evaluate({"type": "com.x.created"}) == (False, [])


ALPHABET = "ab%_\\"


@given(st.text(alphabet=ALPHABET, max_size=8), st.text(alphabet=ALPHABET, max_size=8))
def test_like_matcher_agrees_with_reference(value: str, pattern: str) -> None:
    assert like_matcher(pattern)(value) is reference_like(value, pattern)


@given(st.text(alphabet="abc", max_size=10), st.lists(st.text(alphabet="abc", max_size=3), max_size=4))
def test_percent_only_patterns_agree_with_reference(value: str, chunks: list[str]) -> None:
    pattern = "%".join(chunks)
    assert like_matcher(pattern)(value) is reference_like(value, pattern)
    assert like_matcher("%" + pattern + "%")(value) is reference_like(value, "%" + pattern + "%")
