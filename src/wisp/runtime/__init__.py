"""Runtime backends run a revision's instances; the supervisor keeps a revision at its scale.

Backends are chosen by name from config (`runtime.default`) and imported lazily, so optional
dependencies of one backend never burden the others.
"""

from __future__ import annotations

from pathlib import Path

from wisp.clock import Clock
from wisp.runtime.base import (
    Instance,
    InstanceListener,
    InstanceSpec,
    InstanceState,
    InvalidInstanceSpec,
    ProbeSpec,
    RuntimeBackend,
    RuntimeBackendError,
)
from wisp.runtime.supervisor import Backoff, Failure, RevisionSupervisor, SupervisorStatus

__all__ = [
    "Backoff",
    "Failure",
    "Instance",
    "InstanceListener",
    "InstanceSpec",
    "InstanceState",
    "InvalidInstanceSpec",
    "ProbeSpec",
    "RevisionSupervisor",
    "RuntimeBackend",
    "RuntimeBackendError",
    "SupervisorStatus",
    "create_backend",
]


def create_backend(name: str, data_dir: Path, clock: Clock) -> RuntimeBackend:
    """The backend called `name` (`process`, `function`; `container` comes later)."""
    if name == "process":
        from wisp.runtime.process import ProcessBackend
        return ProcessBackend(data_dir, clock, guard_groups=True)
    if name == "function":
        from wisp.runtime.function import FunctionBackend
        return FunctionBackend(data_dir, clock)
    raise RuntimeBackendError(f"runtime backend {name!r} is not available")
