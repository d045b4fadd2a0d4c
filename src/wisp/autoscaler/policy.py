"""One KPA decision tick, as a pure function (Knative `pkg/autoscaler/scaling/autoscaler.go: Scale`).

The decider turns the stable and panic window averages into a desired pod count. Its only memory is the
panic episode (when it was last over the threshold, and the most pods it asked for since) and the
scale-down-delay window; both live in an immutable `DeciderState` that each call returns anew, so a
test or a restart can replay any sequence of ticks exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from wisp.api.autoscaling import AutoscalingSpec
from wisp.autoscaler.window import MaxTimeWindow

__all__ = [
    "MIN_ACTIVATORS",
    "UNKNOWN",
    "DeciderState",
    "Decision",
    "burst_capacity",
    "decide",
    "initial_decision",
    "should_poke",
]

UNKNOWN = -1
MIN_ACTIVATORS = 2
# Decisions are made every 2 s; the delay window remembers them at that granularity.
TICK_INTERVAL = 2.0


@dataclass(frozen=True)
class Decision:
    """What one tick concluded. `desired` is -1 while no metrics have ever been seen.

    `ebc` (excess burst capacity) < 0 means the ready pods cannot absorb a burst of the target burst
    capacity, so the activator must stay in the request path; `num_activators` is how many activators
    the revision should be spread over.
    """

    desired: int
    ebc: int
    num_activators: int = MIN_ACTIVATORS
    panicking: bool = False
    desired_stable: int = 0
    desired_panic: int = 0
    stable_value: float = 0.0
    panic_value: float = 0.0


def initial_decision(spec: AutoscalingSpec) -> Decision:
    """The decision before any data: unknown scale, and the activator kept in the path unless TBC=0."""
    return Decision(desired=UNKNOWN, ebc=0 if spec.tbc == 0 else -1)


@dataclass(frozen=True)
class DeciderState:
    """The decider's memory between ticks; `last` is the most recent valid decision."""

    last: Decision
    panic_since: float | None = None
    max_panic_pods: int = 0
    delay: MaxTimeWindow | None = None

    @classmethod
    def fresh(cls, spec: AutoscalingSpec, ready_pods: int, now: float) -> DeciderState:
        """A new decider. With more than one pod ready it starts in panic, so that losing the metric
        history (a restart) never makes it scale down before it has data again."""
        panic_since = now if ready_pods > 1 else None
        return cls(last=initial_decision(spec), panic_since=panic_since, max_panic_pods=max(0, ready_pods))


def should_poke(last_desired: int, stat_concurrency: float) -> bool:
    """Decide at once: traffic arrived for a revision the decider last scaled to zero (cold start)."""
    return last_desired == 0 and stat_concurrency != 0


def burst_capacity(spec: AutoscalingSpec, ready_pods: int, panic_value: float) -> tuple[int, int]:
    """(excess burst capacity, number of activators) for `ready_pods` ready pods.

    TBC 0: the activator is needed only at zero, so EBC is 0 and the default activator count applies.
    TBC -1: the activator is always in the path (EBC -1) and sized for the pods' total capacity.
    """
    capacity = ready_pods * spec.total
    if spec.tbc == 0:
        return 0, MIN_ACTIVATORS
    if spec.tbc > 0:
        ebc = math.floor(capacity - spec.tbc - panic_value)
        activators = math.ceil((capacity + spec.tbc) / spec.activator_capacity)
        return ebc, max(MIN_ACTIVATORS, activators)
    return -1, max(MIN_ACTIVATORS, math.ceil(capacity / spec.activator_capacity))


def _clamp(value: float, low: float, high: float) -> int:
    return int(min(max(value, low), high))


def _panic_transition(state: DeciderState, over_threshold: bool, stable_window: float,
                      now: float) -> DeciderState:
    """Enter or extend panic while over the threshold; leave only a stable window after the last time."""
    if over_threshold:
        return replace(state, panic_since=now)
    if state.panic_since is not None and now > state.panic_since + stable_window:
        return replace(state, panic_since=None, max_panic_pods=0)
    return state


def decide(spec: AutoscalingSpec, state: DeciderState, stable_avg: float | None, panic_avg: float | None,
           ready_pods: int, reachable: bool, now: float) -> tuple[Decision, DeciderState]:
    """One decision tick (spec §3.3). With no metrics (None averages) the previous decision stands."""
    if stable_avg is None or panic_avg is None:
        return state.last, state
    ready = max(1.0, float(ready_pods))
    max_up = math.ceil(spec.max_scale_up_rate * ready)
    max_down = math.floor(ready / spec.max_scale_down_rate) if reachable else 0
    want_stable = math.ceil(stable_avg / spec.target)
    want_panic = math.ceil(panic_avg / spec.target)
    desired_stable = _clamp(want_stable, max_down, max_up)
    desired_panic = _clamp(want_panic, max_down, max_up)
    if spec.activation_scale > 1:
        # Coming up from zero (or any non-zero want) never asks for fewer than activation-scale pods.
        if want_stable > 0:
            desired_stable = max(desired_stable, spec.activation_scale)
        if want_panic > 0:
            desired_panic = max(desired_panic, spec.activation_scale)

    state = _panic_transition(state, want_panic / ready >= spec.panic_threshold, spec.stable_window, now)
    desired = desired_stable
    if state.panic_since is not None:
        # Panic only ever scales up: hold the largest count asked for during this episode.
        desired = max(desired_stable, desired_panic, state.max_panic_pods)
        state = replace(state, max_panic_pods=desired)

    if spec.scale_down_delay > 0 and reachable:
        delay = state.delay
        if delay is None or delay.duration != spec.scale_down_delay:
            delay = MaxTimeWindow(spec.scale_down_delay, TICK_INTERVAL)
        delay = delay.record(now, desired)
        desired = delay.current()
        state = replace(state, delay=delay)

    ebc, activators = burst_capacity(spec, ready_pods, panic_avg)
    decision = Decision(
        desired=desired, ebc=ebc, num_activators=activators, panicking=state.panic_since is not None,
        desired_stable=desired_stable, desired_panic=desired_panic,
        stable_value=stable_avg, panic_value=panic_avg)
    return decision, replace(state, last=decision)
