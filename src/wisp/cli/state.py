"""Options given before the sub-command, shared by every command of one invocation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer


@dataclass
class CLIState:
    api: str | None = None


STATE = CLIState()


# Options every resource command shares, spelled once.
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="Output format: yaml or json.")]
AllNamespacesOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")]
