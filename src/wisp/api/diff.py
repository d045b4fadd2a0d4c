"""A short, one-line diff of two JSON-like values, for "changed without …" error messages."""

from __future__ import annotations

import json
from typing import Any

_ABSENT = object()


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k in value:
            _flatten(value[k], f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out)
    else:
        out[path] = value


def changes(old: Any, new: Any) -> list[str]:
    """One entry per changed leaf: `spec.containers[0].image: -"a" +"b"` (sorted by path)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(old, "", before)
    _flatten(new, "", after)
    out = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path, _ABSENT), after.get(path, _ABSENT)
        if a == b and type(a) is type(b):
            continue
        parts = [f"-{json.dumps(a, sort_keys=True)}" if a is not _ABSENT else "",
                 f"+{json.dumps(b, sort_keys=True)}" if b is not _ABSENT else ""]
        out.append(f"{path or '.'}: {' '.join(p for p in parts if p)}")
    return out


def short_diff(old: Any, new: Any, limit: int = 8) -> str:
    """The first `limit` changes joined by "; ", or "" when the values are equal."""
    found = changes(old, new)
    text = "; ".join(found[:limit])
    if len(found) > limit:
        text += f"; … and {len(found) - limit} more"
    return text
