"""Kubernetes label selectors: parsing the query-string form and matching labels (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wisp.api.errors import BadRequest

_SET_OP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_OP = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")

Requirement = Callable[[Mapping[str, str]], bool]


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(req(labels) for req in self.requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a `( … )` value set."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _requirement(term: str) -> Requirement:
    if m := _SET_OP.match(term):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_OP.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        return (lambda labels: key not in labels) if negate else (lambda labels: key in labels)
    raise BadRequest(f"unable to parse requirement: {term.strip()!r}")


def parse_selector(text: str | None) -> Selector:
    """Parse `a=b,c!=d,e in (x,y),!f` into a Selector; a bad term is a 400."""
    if not text or not text.strip():
        return Selector()
    return Selector(tuple(_requirement(t) for t in _split_top_level(text)), text)


def from_match_labels(match_labels: Mapping[str, str] | None) -> Selector:
    """The selector `{key: value, …}` means (used by sources and bindings)."""
    items = dict(match_labels or {})

    def equals(key: str, value: str) -> Requirement:
        return lambda labels: labels.get(key) == value

    return Selector(tuple(equals(k, v) for k, v in items.items()))
