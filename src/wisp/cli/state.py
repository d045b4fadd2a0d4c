"""Options given before the sub-command, shared by every command of one invocation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CLIState:
    api: str | None = None


STATE = CLIState()
