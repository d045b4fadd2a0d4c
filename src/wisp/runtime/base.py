"""The runtime seam: what every backend (process, function, container) offers the control plane.

Controllers build an `InstanceSpec` from a Revision; a `RuntimeBackend` turns it into running
`Instance`s. Backends differ in *how* an instance runs, never in what the supervisor and the data
plane can observe about it: its endpoint, its readiness, its exit code and its log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from wisp.clock import Clock
from wisp.runtime.logs import follow, last_lines

log = logging.getLogger("wisp.runtime")

ProbeKind = Literal["tcp", "http", "exec"]

# Exit codes a shell would give: the command was not found / was found but could not be executed.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class RuntimeBackendError(Exception):
    """Base of the runtime subsystem's errors (bad specs, backend unavailable)."""


class InvalidInstanceSpec(RuntimeBackendError):
    """The spec cannot be run by any backend (e.g. an empty argv)."""


@dataclass(frozen=True)
class ProbeSpec:
    """A readiness probe, mirroring Kubernetes' fields (`periodSeconds: 0` means aggressive probing).

    `port` 0 means the instance's own port; `host` "" means the instance's host.
    """

    kind: ProbeKind = "tcp"
    path: str = "/"
    port: int = 0
    host: str = ""
    scheme: Literal["http", "https"] = "http"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    period_seconds: float = 0.0
    timeout_seconds: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    initial_delay_seconds: float = 0.0

    @property
    def aggressive(self) -> bool:
        """Knative's queue-proxy probes every few ms until ready when no period is given."""
        return self.period_seconds <= 0


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to start one instance of a revision; built by the controllers.

    `env` is the user's environment, already resolved; the backend adds `PORT` and the `K_*`
    variables. When `rootfs` is set (an unpacked, read-only image snapshot) the working directory
    defaults to it and relative command paths resolve against it.
    """

    namespace: str
    revision: str
    command: list[str]
    service: str = ""
    configuration: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    rootfs: Path | None = None
    readiness: ProbeSpec = ProbeSpec()
    termination_grace: float = 30.0

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]

    def contract_env(self, port: int) -> dict[str, str]:
        """The variables the runtime contract promises every instance (they win over user env)."""
        return {
            "PORT": str(port),
            "K_SERVICE": self.service,
            "K_CONFIGURATION": self.configuration,
            "K_REVISION": self.revision,
        }


class InstanceState(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    UNREADY = "unready"
    STOPPING = "stopping"
    EXITED = "exited"


InstanceListener = Callable[["Instance"], None]


class Instance:
    """One running (or finished) copy of a revision, as every backend reports it.

    The backend owns the mutable state and changes it through `_set_state`; everyone else reads.
    Listeners are called synchronously on each state change, so they must be cheap.
    """

    def __init__(self, id: str, spec: InstanceSpec, *, host: str, port: int, pid: int | None,
                 started_at: float, log_path: Path) -> None:
        self.id = id
        self.spec = spec
        self.host = host
        self.port = port
        self.pid = pid
        self.started_at = started_at
        self.log_path = log_path
        self.state = InstanceState.STARTING
        self.exit_code: int | None = None
        self.ready_since: float | None = None
        self.exited_at: float | None = None
        self._listeners: list[InstanceListener] = []
        self._exited = asyncio.Event()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return (f"Instance({self.spec.namespace}/{self.spec.revision}/{self.id} "
                f"{self.host}:{self.port} pid={self.pid} {self.state})")

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def alive(self) -> bool:
        return self.state is not InstanceState.EXITED

    @property
    def ready(self) -> bool:
        return self.state is InstanceState.READY

    def add_listener(self, listener: InstanceListener) -> None:
        self._listeners.append(listener)

    def last_log_lines(self, n: int = 10) -> list[str]:
        """The last `n` lines the instance wrote (timestamps stripped), oldest first."""
        return last_lines(self.log_path, n)

    def follow(self, clock: Clock, *, from_start: bool = True) -> AsyncIterator[str]:
        """Stored log lines as they are written; ends after the instance exited and all is read."""
        return follow(self.log_path, clock, from_start=from_start, until=lambda: not self.alive)

    async def wait_exited(self) -> int | None:
        await self._exited.wait()
        return self.exit_code

    def next_change(self) -> Coroutine[Any, Any, object]:
        """An awaitable for the next state change after *this call* (not after the first await),
        so a change that happens before the caller gets to wait is never missed."""
        return self._changed.wait()

    def _set_state(self, state: InstanceState, now: float, exit_code: int | None = None) -> None:
        """Backend-only: move to `state`; EXITED is final and records the exit code."""
        if self.state is InstanceState.EXITED or self.state is state:
            return
        if self.state is InstanceState.STOPPING and state in (InstanceState.READY, InstanceState.UNREADY):
            return  # a stopping instance never comes back into rotation
        self.state = state
        self.ready_since = now if state is InstanceState.READY else None
        if state is InstanceState.EXITED:
            self.exit_code = exit_code
            self.exited_at = now
            self._exited.set()
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a broken listener must not break the backend
                log.exception("instance listener failed for %s", self.id)


class RuntimeBackend(Protocol):
    """What the supervisor needs from a backend; `name` is the config string that selects it."""

    name: str

    async def start(self, spec: InstanceSpec, *, on_change: InstanceListener | None = None) -> Instance:
        """Spawn one instance and return at once, without waiting for readiness.

        A command that cannot be run yields an instance that has already exited (127/126) with the
        reason in its log; it is never raised to the caller.
        """
        ...

    async def stop(self, instance: Instance, grace: float) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; return the exit code."""
        ...

    async def wait_ready(self, instance: Instance, timeout: float) -> bool:
        """True once the instance is ready; False if it exits or `timeout` seconds pass first."""
        ...

    def list(self) -> list[Instance]:
        """Every instance this backend started that has not been stopped or exited."""
        ...

    async def cleanup_stale(self) -> int:
        """Kill instances a previous wisp process left behind; return how many were found."""
        ...

    async def close(self, grace: float) -> None:
        """Stop every instance (used at shutdown)."""
        ...
