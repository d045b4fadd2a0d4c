"""Keeps one revision at its desired scale on a runtime backend, and says how that is going.

The supervisor is level-based: every pass compares the desired count with the instances it owns
and starts or stops the difference. Crashed instances are replaced after an exponential backoff
(like kubelet's CrashLoopBackOff); a revision that never reaches its initial scale within the
progress deadline is failed and scaled to zero, as Knative does. Every observable change is pushed
synchronously through `on_change` as a frozen `SupervisorStatus`: the data plane takes its endpoint
list from it and the revision controller its conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wisp.clock import Clock
from wisp.runtime.base import Instance, InstanceSpec, RuntimeBackend

log = logging.getLogger("wisp.runtime.supervisor")

PROGRESS_DEADLINE_REASON = "ProgressDeadlineExceeded"
PROGRESS_DEADLINE_MESSAGE = "Initial scale was never achieved"
FAILURE_LOG_LINES = 10
MAX_MESSAGE_CHARS = 2048


@dataclass(frozen=True)
class Failure:
    """Why the revision is failing, in Knative's terms (`ExitCode<N>`, `ProgressDeadlineExceeded`)."""

    reason: str
    message: str


@dataclass(frozen=True)
class SupervisorStatus:
    """A snapshot of one revision's instances; a new one is published on every change."""

    desired: int = 0
    actual: int = 0
    ready: int = 0
    ready_endpoints: tuple[tuple[str, int], ...] = ()
    initial_scale_reached: bool = False
    failure: Failure | None = None
    last_exit_code: int | None = None


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial` doubling up to `maximum`; a crash after `reset_after` seconds of
    healthy (ready) running starts the sequence over."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 10.0
    reset_after: float = 10.0

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the next start after `crashes` consecutive crashes."""
        if crashes <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (crashes - 1))


def crash_failure(exit_code: int, log_lines: list[str]) -> Failure:
    """The failure for an instance that exited on its own, quoting the end of its log."""
    lines = [line.rstrip() for line in log_lines if line.strip()]
    text = "\n".join(lines) if lines else f"exit code {exit_code}"
    if len(text) > MAX_MESSAGE_CHARS:
        text = "…" + text[-MAX_MESSAGE_CHARS:]
    return Failure(f"ExitCode{exit_code}", f"Container failed with: {text}")


VictimPicker = Callable[[list[Instance], int], list[Instance]]
"""Chooses which `n` of the running instances to stop on scale-down (the data plane can plug in
'least busy'); the default takes instances not serving yet first, then the newest."""


def newest_first(instances: list[Instance], n: int) -> list[Instance]:
    ranked = sorted(instances, key=lambda i: (i.ready, -i.started_at))
    return ranked[:n]


StatusListener = Callable[[SupervisorStatus], None]
Drain = Callable[[Instance], Awaitable[None]]
"""Awaited after an instance left rotation and before it gets SIGTERM: the data plane waits here
for its in-flight requests (Knative's preStop `wait-for-drain`)."""


class RevisionSupervisor:
    """Keeps `spec`'s revision at the scale last asked for through `scale(n)`."""

    def __init__(self, backend: RuntimeBackend, spec: InstanceSpec, clock: Clock, *,
                 progress_deadline: float, on_change: StatusListener,
                 backoff: Backoff = Backoff(), pick_victims: VictimPicker = newest_first,
                 drain: Drain | None = None) -> None:
        self.backend = backend
        self.spec = spec
        self.clock = clock
        self.progress_deadline = progress_deadline
        self._on_change = on_change
        self._backoff = backoff
        self._pick_victims = pick_victims
        self._drain = drain
        self._instances: dict[str, Instance] = {}  # wanted and running
        self._stopping: dict[str, Instance] = {}
        self._ready_at: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._desired = 0
        self._surge = 0  # extra instances a rolling replacement runs beside the ones it replaces
        self._scaled = False  # scale() has been called at least once
        self._crashes = 0
        self._next_start_at = 0.0
        self._deadline_at: float | None = None
        self._deadline_failed = False
        self._initial_reached = False
        self._crash: Failure | None = None
        self._last_exit: int | None = None
        self._status = SupervisorStatus()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def status(self) -> SupervisorStatus:
        return self._status

    @property
    def instances(self) -> list[Instance]:
        """Instances the supervisor wants running (not those being stopped)."""
        return list(self._instances.values())

    async def scale(self, n: int) -> None:
        """Keep `n` instances. Returns once the needed starts/stops have been issued (not once ready).

        After a progress-deadline failure the revision stays at zero until it is asked for a
        different scale (e.g. 0 then N when traffic returns): then it gets a fresh deadline.
        """
        if self._closed:
            raise RuntimeError("supervisor is closed")
        if n < 0:
            raise ValueError("scale must be >= 0")
        if self._deadline_failed and n == self._desired:
            return
        if self._deadline_failed:
            self._deadline_failed, self._deadline_at = False, None
        if not self._scaled and n == 0:
            self._initial_reached = True  # an initial scale of zero is reached at once
        self._desired, self._scaled = n, True
        if n > 0 and not self._initial_reached and self._deadline_at is None:
            self._deadline_at = self.clock.monotonic() + self.progress_deadline
        if self._loop is None:
            self._loop = asyncio.ensure_future(self._run())
        await self._reconcile()
        self._wake.set()

    async def close(self, grace: float | None = None) -> None:
        """Stop every instance (with `grace`, default the spec's) and the background loop."""
        self._closed = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        async with self._lock:
            for inst in list(self._instances.values()):
                self._begin_stop(inst, grace)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._publish()

    # ---- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            try:
                await self._reconcile()
            except Exception:
                log.exception("%s/%s: reconcile failed", self.spec.namespace, self.spec.revision)
            await self._sleep_until_woken(self._next_timer())

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if timeout is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep(max(0.0, timeout))))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _next_timer(self) -> float | None:
        """Seconds until something time-based is due: a delayed restart or the progress deadline."""
        now = self.clock.monotonic()
        due = []
        if self._deadline_at is not None and not self._initial_reached and not self._deadline_failed:
            due.append(self._deadline_at - now)
        if len(self._instances) < self._desired and not self._deadline_failed:
            due.append(self._next_start_at - now)
        return min(due) if due else None

    async def _reconcile(self) -> None:
        async with self._lock:
            if self._closed:
                return
            if self._deadline_expired():
                self._fail_deadline()
            target = 0 if self._deadline_failed else self._desired + self._surge
            excess = len(self._instances) - target
            if excess > 0:
                for inst in self._pick_victims(list(self._instances.values()), excess):
                    self._begin_stop(inst, None)
            while len(self._instances) < target and self.clock.monotonic() >= self._next_start_at:
                await self._start_one()
                if self._closed:
                    break
            self._publish()

    def _deadline_expired(self) -> bool:
        return (self._deadline_at is not None and not self._initial_reached
                and not self._deadline_failed and self.clock.monotonic() >= self._deadline_at)

    def _fail_deadline(self) -> None:
        log.warning("%s/%s: %s", self.spec.namespace, self.spec.revision, PROGRESS_DEADLINE_MESSAGE)
        self._deadline_failed = True

    # ---- starting and stopping ----------------------------------------------------------------

    async def _start_one(self) -> Instance | None:
        try:
            inst = await self.backend.start(self.spec, on_change=self._on_instance)
        except Exception as e:
            log.exception("%s/%s: start failed", self.spec.namespace, self.spec.revision)
            self._record_crash(None, 1, [f"wisp: cannot start instance: {e}"])
            return None
        if inst.alive:
            self._instances[inst.id] = inst
            return inst
        # could not even be spawned (command not found…)
        self._record_crash(inst, inst.exit_code or 1, inst.last_log_lines(FAILURE_LOG_LINES))
        return None

    # ---- rolling replacement -----------------------------------------------------------------

    async def roll(self, spec: InstanceSpec, ready_timeout: float | None = None) -> bool:
        """Replace every running instance with one started from `spec`, one at a time.

        Each replacement starts beside the instance it replaces (a surge of one), and the old one
        leaves rotation (drain, SIGTERM) only once the new one is ready, so capacity never drops.
        Returns False, keeping the remaining old instances, if a replacement does not get ready in
        `ready_timeout` (default: the progress deadline).
        """
        self.spec = spec
        timeout = self.progress_deadline if ready_timeout is None else ready_timeout
        for old in list(self._instances.values()):
            async with self._lock:
                if self._closed or old.id not in self._instances:
                    continue
                self._surge += 1
                new = await self._start_one()
            ok = new is not None and await self._until_ready(new, timeout)
            async with self._lock:
                self._surge -= 1
                retire = old if ok else new
                if retire is not None and retire.id in self._instances:
                    self._begin_stop(retire, None)
            if not ok:
                log.warning("%s/%s: rolling replacement did not get ready; keeping the old instances",
                            spec.namespace, spec.revision)
                return False
        return True

    async def _until_ready(self, inst: Instance, timeout: float) -> bool:
        deadline = self.clock.monotonic() + timeout
        while inst.alive and not inst.ready:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return False
            change = asyncio.ensure_future(inst.next_change())
            timer = asyncio.ensure_future(self.clock.sleep(left))
            try:
                await asyncio.wait({change, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                change.cancel()
                timer.cancel()
        return inst.ready

    def _begin_stop(self, inst: Instance, grace: float | None) -> None:
        """Take the instance out of rotation first (publish), then stop it in the background."""
        self._instances.pop(inst.id, None)
        self._ready_at.pop(inst.id, None)
        self._stopping[inst.id] = inst
        self._publish()
        g = self.spec.termination_grace if grace is None else grace
        task = asyncio.ensure_future(self._stop(inst, g))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop(self, inst: Instance, grace: float) -> None:
        try:
            if self._drain is not None and inst.alive:
                await self._drain(inst)
            await self.backend.stop(inst, grace)
        except Exception:
            log.exception("%s/%s: stopping %s failed", self.spec.namespace, self.spec.revision, inst.id)
        self._stopping.pop(inst.id, None)
        self._publish()

    # ---- events from instances ---------------------------------------------------------------

    def _on_instance(self, inst: Instance) -> None:
        if inst.id in self._stopping:
            if not inst.alive:
                self._stopping.pop(inst.id, None)
        elif inst.id in self._instances:
            if not inst.alive:
                del self._instances[inst.id]
                self._record_crash(inst, inst.exit_code or 0, inst.last_log_lines(FAILURE_LOG_LINES))
                self._wake.set()
            elif inst.ready:
                self._ready_at[inst.id] = self.clock.monotonic()
            else:
                self._ready_at.pop(inst.id, None)
        self._publish()

    def _record_crash(self, inst: Instance | None, exit_code: int, lines: list[str]) -> None:
        now = self.clock.monotonic()
        ready_at = self._ready_at.pop(inst.id, None) if inst is not None else None
        if ready_at is not None and now - ready_at >= self._backoff.reset_after:
            self._crashes = 0
        self._crashes += 1
        self._next_start_at = now + self._backoff.delay(self._crashes)
        self._last_exit = exit_code
        self._crash = crash_failure(exit_code, lines)
        log.warning("%s/%s: instance exited with %d; restarting in %.1fs", self.spec.namespace,
                    self.spec.revision, exit_code, self._next_start_at - now)

    # ---- status ------------------------------------------------------------------------------

    def _publish(self) -> None:
        ready = sorted((i for i in self._instances.values() if i.ready), key=lambda i: i.started_at)
        desired = 0 if self._deadline_failed else self._desired
        if not self._initial_reached and desired > 0 and len(ready) >= desired:
            self._initial_reached, self._deadline_at = True, None
        if self._crash is not None and desired > 0 and len(ready) >= desired:
            self._crash = None  # healthy again
        failure = (Failure(PROGRESS_DEADLINE_REASON, PROGRESS_DEADLINE_MESSAGE)
                   if self._deadline_failed else self._crash)
        status = SupervisorStatus(
            desired=desired, actual=len(self._instances), ready=len(ready),
            ready_endpoints=tuple(i.endpoint for i in ready),
            initial_scale_reached=self._initial_reached, failure=failure,
            last_exit_code=self._last_exit)
        if status != self._status:
            self._status = status
            try:
                self._on_change(status)
            except Exception:
                log.exception("supervisor status listener failed")
