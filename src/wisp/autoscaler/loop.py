"""The KPA driver: stats every second, decisions every tick, pokes at once on demand at zero.

Knative spreads this over queue-proxies, the activator, the autoscaler and the KPA reconciler; here it
is one object per `wisp serve`. Everything time-based goes through the injected clock, and the maths
stays in the pure `policy` and `scaler` modules: this class only keeps per-revision state, feeds it
and hands each `ScaleResult` to `apply` (the runtime glue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wisp.api.autoscaling import AutoscalingSpec
from wisp.autoscaler.policy import DeciderState, decide, should_poke
from wisp.autoscaler.scaler import ScaleResult, ScalerState, scale
from wisp.autoscaler.window import MetricWindows, Stat
from wisp.clock import Clock

log = logging.getLogger("wisp.autoscaler")

StatsSource = Callable[[str], Stat]          # key → the last second's stat for the revision
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
        """Start (or update) tracking a revision; True when it is new."""
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
        self.revisions[key] = state
        return current is None

    def forget(self, key: str) -> None:
        self.revisions.pop(key, None)

    # ---- events ------------------------------------------------------------------------------

    def demand(self, key: str) -> None:
        """A request found no ready instance: record it and decide now instead of at the next tick."""
        rev = self.revisions.get(key)
        if rev is None:
            return
        now = self.clock.monotonic()
        last = rev.decider.last.desired
        rev.windows.record(now, Stat(concurrency=1.0, request_count=1.0))
        if should_poke(0 if last < 0 else last, 1.0) and not rev.poked:
            rev.poked = True
            task = asyncio.get_running_loop().create_task(self.evaluate(key))
            self._pokes.add(task)
            task.add_done_callback(self._pokes.discard)

    async def evaluate(self, key: str) -> ScaleResult | None:
        """One decision + scale step for `key`, applied."""
        rev = self.revisions.get(key)
        if rev is None:
            return None
        async with rev.lock:
            now = self.clock.monotonic()
            ready = self._ready(key)
            averages = rev.windows.stable_and_panic(rev.spec.metric, now)
            stable, panic = averages if averages is not None else (None, None)
            decision, rev.decider = decide(rev.spec, rev.decider, stable, panic, ready, rev.reachable, now)
            result, rev.scaler = scale(rev.spec, rev.scaler, decision, ready, now, reachable=rev.reachable,
                                       progress_deadline=rev.progress_deadline)
            rev.poked = False
            rev.last = result
        await self._apply(key, result)
        return result

    # ---- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wisp-autoscaler")

    async def stop(self) -> None:
        for task in [self._task, *self._pokes]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._task, *self._pokes] if t], return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        next_tick = self.clock.monotonic() + self.tick_interval
        while True:
            await self.clock.sleep(self.stat_interval)
            now = self.clock.monotonic()
            for key, rev in list(self.revisions.items()):
                rev.windows.record(now, self._stats(key))
            if now + 1e-6 >= next_tick:
                next_tick = now + self.tick_interval
                for key in list(self.revisions):
                    try:
                        await self.evaluate(key)
                    except Exception:
                        log.exception("autoscaling %s failed", key)
