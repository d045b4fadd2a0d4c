"""The KPA driver: stats every second, decisions every tick, pokes at once on demand at zero.

Knative spreads this over queue-proxies, the activator, the autoscaler and the KPA reconciler; here it
is one object per `wisp serve`. Everything time-based goes through the injected clock, and the maths
stays in the pure `policy` and `scaler` modules: this class only keeps per-revision state, feeds it
and hands each `ScaleResult` to `apply` (the runtime glue).

Three things run a revision's scaler: the tick (`evaluate`: a new decision from the windows, then
scale), a poke (`demand`: a request found nothing ready, so decide now rather than up to 2 s later),
and a refresh (`refresh`: the ready count changed, so re-apply the last decision, as Knative's PA
reconciler does on an endpoints event). All three hold the revision's lock across `apply`, so the
runtime sees results in the order they were computed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from wisp.api.autoscaling import AutoscalingSpec
from wisp.autoscaler.policy import DeciderState, Decision, decide, should_poke
from wisp.autoscaler.scaler import NO_TRAFFIC, Mode, ScaleResult, ScalerState, scale
from wisp.autoscaler.window import MetricWindows, Stat
from wisp.clock import Clock

__all__ = ["Autoscaler", "RevisionScaling", "retire"]

log = logging.getLogger("wisp.autoscaler")

StatsSource = Callable[[str], Stat]          # key → the last period's stat for the revision
ReadySource = Callable[[str], int]           # key → ready instances now
Apply = Callable[[str, ScaleResult], Awaitable[None]]


@dataclass
class RevisionScaling:
    """Everything the autoscaler remembers about one revision."""

    spec: AutoscalingSpec
    windows: MetricWindows
    decider: DeciderState
    scaler: ScalerState
    reachable: bool = True
    progress_deadline: float = 600.0
    last: ScaleResult | None = None
    poked: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def retire(state: ScalerState, ready: int, now: float) -> tuple[ScaleResult, ScalerState]:
    """The result for a revision no route points at: no instances, Inactive, behind the activator.

    Knative lets an unreachable revision idle down through the stable window and the grace period.
    On one machine instances are the scarce resource and the drain before SIGTERM already protects
    requests in flight, so wisp stops them at once, as it did before the autoscaler existed.
    """
    active = state.active.mark("False", *NO_TRAFFIC, now)
    mode = Mode.PROXY
    new = replace(state, active=active, replicas=0, mode=mode,
                  mode_since=state.mode_since if state.mode is mode else now)
    result = ScaleResult(want=0, replicas=0, changed=state.replicas != 0, mode=mode, num_activators=2,
                         active=active, actual_replicas=ready, desired_replicas=0, recheck_after=None,
                         state=new)
    return result, new


class Autoscaler:
    """Per-revision KPA state plus the loop that drives it."""

    def __init__(self, clock: Clock, stats: StatsSource, ready: ReadySource, apply: Apply, *,
                 tick_interval: float = 2.0, stat_interval: float = 1.0) -> None:
        self.clock = clock
        self._stats = stats
        self._ready = ready
        self._apply = apply
        self.tick_interval = tick_interval
        self.stat_interval = stat_interval
        self.revisions: dict[str, RevisionScaling] = {}
        self._task: asyncio.Task[None] | None = None
        self._pokes: set[asyncio.Task[ScaleResult | None]] = set()

    # ---- registration ------------------------------------------------------------------------

    def track(self, key: str, spec: AutoscalingSpec, *, reachable: bool, progress_deadline: float) -> bool:
        """Start (or update) tracking a revision; True when it is new.

        A changed spec (new annotations) restarts the windows and the decider, as Knative does when
        a metric's window changes, but keeps the scaler's state: the instances are still there.
        """
        now = self.clock.monotonic()
        current = self.revisions.get(key)
        if current is not None and current.spec == spec:
            current.reachable, current.progress_deadline = reachable, progress_deadline
            return False
        windows = MetricWindows(spec.stable_window, spec.panic_window, spec.aggregation)
        ready = self._ready(key)
        state = RevisionScaling(spec, windows, DeciderState.fresh(spec, ready, now),
                                ScalerState.new(spec, now) if current is None else current.scaler,
                                reachable, progress_deadline)
        if current is not None:
            state.last = current.last
        self.revisions[key] = state
        return current is None

    def forget(self, key: str) -> None:
        self.revisions.pop(key, None)

    def last(self, key: str) -> ScaleResult | None:
        """The most recent result applied for `key` (None before the first)."""
        rev = self.revisions.get(key)
        return rev.last if rev is not None else None

    # ---- events ------------------------------------------------------------------------------

    def demand(self, key: str) -> None:
        """A request found no ready instance: decide now instead of at the next tick.

        Like the activator's first report for a revision, the request counts as concurrency 1 at
        once (the meter reports it again with the next second's stat, as Knative double-reports
        too). Only the first request of a cold episode pokes; the others are already in the meter.
        """
        rev = self.revisions.get(key)
        if rev is None or rev.poked or not rev.reachable:
            return
        last = rev.decider.last.desired
        if not should_poke(0 if last < 0 else last, 1.0) and rev.scaler.replicas > 0:
            return  # an instance is already on its way up
        rev.poked = True
        rev.windows.record(self.clock.monotonic(), Stat(concurrency=1.0, request_count=1.0))
        task = asyncio.get_running_loop().create_task(self.evaluate(key))
        self._pokes.add(task)
        task.add_done_callback(self._pokes.discard)

    async def evaluate(self, key: str) -> ScaleResult | None:
        """One decision from the windows plus one scale step for `key`, applied."""
        rev = self.revisions.get(key)
        if rev is None:
            return None
        async with rev.lock:
            now = self.clock.monotonic()
            ready = self._ready(key)
            averages = rev.windows.stable_and_panic(rev.spec.metric, now)
            stable, panic = averages if averages is not None else (None, None)
            decision, rev.decider = decide(rev.spec, rev.decider, stable, panic, ready, rev.reachable, now)
            rev.poked = False
            return await self._scale(key, rev, decision, ready, now)

    async def refresh(self, key: str) -> ScaleResult | None:
        """Re-apply the last decision with the current ready count (instances came or went)."""
        rev = self.revisions.get(key)
        if rev is None:
            return None
        async with rev.lock:
            now = self.clock.monotonic()
            return await self._scale(key, rev, rev.decider.last, self._ready(key), now)

    async def _scale(self, key: str, rev: RevisionScaling, decision: Decision, ready: int,
                     now: float) -> ScaleResult:
        if rev.reachable:
            result, rev.scaler = scale(rev.spec, rev.scaler, decision, ready, now, reachable=True,
                                       progress_deadline=rev.progress_deadline)
        else:
            result, rev.scaler = retire(rev.scaler, ready, now)
        if rev.last is None or (result.replicas, result.mode, result.active) != (
                rev.last.replicas, rev.last.mode, rev.last.active):
            log.info("%s: replicas %d (ready %d, want %d), %s, Active=%s %s", key, result.replicas, ready,
                     result.want, result.mode, result.active.status, result.active.reason,
                     extra={"revision": key})
        rev.last = result
        await self._apply(key, result)
        return result

    # ---- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wisp-autoscaler")

    @property
    def running(self) -> bool:
        return self._task is not None

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._pokes] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        # Deadlines are absolute so that slow ticks never make the cadence drift.
        start = self.clock.monotonic()
        next_stat, next_tick = start + self.stat_interval, start + self.tick_interval
        while True:
            await self.clock.sleep(next_stat - self.clock.monotonic())
            now = self.clock.monotonic()
            next_stat = max(next_stat + self.stat_interval, now)
            self.collect(now)
            if now + 1e-6 >= next_tick:
                next_tick = max(next_tick + self.tick_interval, now)
                await self.tick()

    def collect(self, now: float) -> None:
        """Record every tracked revision's stat for the period ending `now`."""
        for key, rev in list(self.revisions.items()):
            try:
                rev.windows.record(now, self._stats(key))
            except Exception:
                log.exception("reading stats of %s failed", key)

    async def tick(self) -> None:
        """Decide for every revision at once; one slow or failing revision never holds up the rest."""
        keys = list(self.revisions)
        results = await asyncio.gather(*(self.evaluate(k) for k in keys), return_exceptions=True)
        for key, res in zip(keys, results, strict=True):
            if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
                log.error("autoscaling %s failed", key, exc_info=res)
