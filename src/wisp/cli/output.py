"""Terminal output: tables, YAML/JSON dumps, ages and condition summaries."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from wisp import clock
from wisp.api.meta import get_condition


def _width() -> int | None:
    """Full width on a terminal; a wide fixed width when piped, so tables never wrap mid-cell."""
    import os
    import sys

    if sys.stdout.isatty():
        return None
    return int(os.environ.get("COLUMNS", "200"))


console = Console(highlight=False, soft_wrap=True, width=_width())
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def dump(obj: Any, fmt: str) -> None:
    """Print an object (or list) as yaml or json, exactly, for piping."""
    if fmt == "json":
        print(json.dumps(obj, indent=2))
    elif fmt == "yaml":
        print(yaml.safe_dump(obj, sort_keys=False).rstrip())
    else:
        raise ValueError(fmt)


def age(timestamp: str | None, now: float | None = None) -> str:
    """`2024-01-01T00:00:00Z` → `5m` / `3h` / `2d`, like kubectl."""
    return clock.age(timestamp, time.time() if now is None else now)


def condition(obj: dict[str, Any], ctype: str = "Ready") -> dict[str, Any]:
    """A copy of the condition ({} when absent), so callers can `.get` without checks."""
    return dict(get_condition(obj, ctype) or {})


def ready_summary(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(conditions "ok/total", ready status, reason) as kn prints them."""
    conds = (obj.get("status") or {}).get("conditions") or []
    ok = sum(1 for c in conds if c.get("status") == "True")
    ready = condition(obj)
    return f"{ok} OK / {len(conds)}", ready.get("status", "Unknown"), ready.get("reason", "")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(str(c) if c is not None else "" for c in row))
    console.print(t)


def conditions_table(obj: dict[str, Any]) -> None:
    conds = (obj.get("status") or {}).get("conditions") or []
    marks = {"True": "++", "False": "!!", "Unknown": "??"}
    rows = [(marks.get(c.get("status", ""), "??"), c.get("type", ""), age(c.get("lastTransitionTime")),
             c.get("reason", ""), c.get("message", "")) for c in conds]
    table(("OK", "TYPE", "AGE", "REASON", "MESSAGE"), rows)
