"""Applying a decision (Knative `kpa/scaler.go` + `kpa/kpa.go`), as a pure state machine over `now`.

The decider says how many pods the load needs; this module decides how many the runtime should actually
run, whether the activator sits in the request path (Proxy) or traffic goes straight to instances
(Serve), and the revision's `Active` condition. Scaling to zero is deliberately slow and staged: the
revision is first marked Inactive (activator in the path), and only after the grace period, with the
activator proven in the path, does the last instance go, so no request ever finds nowhere to go.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from wisp.api.autoscaling import AutoscalingSpec
from wisp.autoscaler.policy import UNKNOWN, Decision

__all__ = [
    "ACTIVATION_TIMEOUT_BUFFER",
    "ActiveCondition",
    "Mode",
    "ScaleResult",
    "ScalerState",
    "active_threshold",
    "apply_bounds",
    "scale",
    "scale_bounds",
]

# Extra time past the progress deadline before giving up on an activation (spec §3.6: 600 s + 30 s).
ACTIVATION_TIMEOUT_BUFFER = 30.0
# How often to re-check while waiting for the activator to be proven in the path (async prober period).
PROBE_PERIOD = 1.0
# Re-check soon after deactivating while already proxying: nothing else will trigger a reconcile.
DEACTIVATE_RECHECK = 3.0

NO_TRAFFIC = ("NoTraffic", "The target is not receiving traffic.")
TIMED_OUT = ("TimedOut", "The target could not be activated.")
QUEUED = ("Queued", "Requests to the target are being buffered as resources are provisioned.")


class Mode(StrEnum):
    """Where ingress sends the revision's traffic: straight to instances, or through the activator."""

    SERVE = "Serve"
    PROXY = "Proxy"


@dataclass(frozen=True)
class ActiveCondition:
    """The `Active` condition: "True" Active, "Unknown" Activating, "False" Inactive.

    `since` is the last transition time; it moves only when status, reason or message change.
    """

    status: str = "Unknown"
    reason: str = ""
    message: str = ""
    since: float = 0.0

    @property
    def activating(self) -> bool:
        return self.status == "Unknown"

    @property
    def active(self) -> bool:
        return self.status == "True"

    @property
    def inactive(self) -> bool:
        return self.status == "False"

    def mark(self, status: str, reason: str, message: str, now: float) -> ActiveCondition:
        if (status, reason, message) == (self.status, self.reason, self.message):
            return self
        return ActiveCondition(status, reason, message, now)


@dataclass(frozen=True)
class ScalerState:
    """What the scaler remembers about one revision between reconciles."""

    active: ActiveCondition
    mode: Mode
    mode_since: float
    replicas: int
    initialized: bool = False

    @classmethod
    def new(cls, spec: AutoscalingSpec, now: float) -> ScalerState:
        """A new revision: activating, behind the activator, asking for its initial scale."""
        return cls(active=ActiveCondition(since=now), mode=Mode.PROXY, mode_since=now,
                   replicas=spec.initial_scale)


@dataclass(frozen=True)
class ScaleResult:
    """Everything the controller writes after one reconcile.

    `replicas` is how many instances the runtime should run now. `want` is the scale asked for (-1 when
    unknown); `desired_replicas`/`actual_replicas` are the Revision status fields. `recheck_after` is
    the longest the caller may wait before reconciling again (None: the next tick is soon enough).
    """

    want: int
    replicas: int
    changed: bool
    mode: Mode
    num_activators: int
    active: ActiveCondition
    actual_replicas: int
    desired_replicas: int | None
    recheck_after: float | None
    state: ScalerState


def apply_bounds(low: int, high: int, x: int) -> int:
    """Clamp to [low, high], where `high` 0 means unbounded."""
    if x < low:
        return low
    if high != 0 and x > high:
        return high
    return x


def scale_bounds(spec: AutoscalingSpec, reachable: bool) -> tuple[int, int]:
    """(min, max): an unreachable revision has no floor, so it can drain away."""
    return (spec.min_scale if reachable else 0), spec.max_scale


def active_threshold(spec: AutoscalingSpec, reachable: bool, initialized: bool) -> int:
    """Ready pods needed to count as Active: the initial scale until reached once, then min (≥ 1)."""
    low, _ = scale_bounds(spec, reachable)
    return max(low, spec.initial_scale) if not initialized else max(low, 1)


@dataclass(frozen=True)
class _Gate:
    """Outcome of scale-to-zero gating: the scale, whether to apply it, and when to look again."""

    desired: int
    apply: bool
    recheck: float | None = None


def _scale_to_zero(spec: AutoscalingSpec, state: ScalerState, now: float, *, reachable: bool,
                   activator_in_path: bool, progress_deadline: float) -> _Gate:
    """Gate a decision of 0 (spec §3.7); any other decision passes unchanged."""
    if not spec.enable_scale_to_zero:
        return _Gate(1, True)
    cond = state.active
    if cond.activating:
        timeout = progress_deadline + ACTIVATION_TIMEOUT_BUFFER
        if now > cond.since + timeout:
            return _Gate(0, True)
        return _Gate(UNKNOWN, False, cond.since + timeout - now)
    if cond.active:
        active_for = now - cond.since
        if active_for >= spec.stable_window:
            # Not applied: the caller marks the revision Inactive, which puts the activator in the path.
            return _Gate(0, False, DEACTIVATE_RECHECK if state.mode is Mode.PROXY else None)
        return _Gate(1, True, spec.stable_window - active_for)
    return _inactive_gate(spec, state, now, reachable=reachable, activator_in_path=activator_in_path)


def _inactive_gate(spec: AutoscalingSpec, state: ScalerState, now: float, *, reachable: bool,
                   activator_in_path: bool) -> _Gate:
    if spec.tbc != -1 and not activator_in_path:
        return _Gate(0, False, PROBE_PERIOD)
    retention = spec.pod_retention if reachable else 0.0
    inactive_for = now - state.active.since
    if inactive_for >= max(spec.scale_to_zero_grace, retention):
        return _Gate(0, True)
    if retention > 0 and inactive_for < retention:
        return _Gate(0, False, retention - inactive_for)
    # Fast path: the activator has been in the path long enough for every router to know it.
    proxy_for = now - state.mode_since if state.mode is Mode.PROXY else 0.0
    remaining = spec.scale_to_zero_grace - proxy_for
    if remaining <= 0:
        return _Gate(0, True)
    return _Gate(0, False, remaining)


def _want(spec: AutoscalingSpec, state: ScalerState, desired: int, now: float, *, reachable: bool,
          activator_in_path: bool, progress_deadline: float) -> _Gate:
    """The scale to ask for: bounds first, then scale-to-zero gating (spec §3.4 steps 1-3)."""
    if desired < 0 and not state.active.activating:
        return _Gate(desired, False)
    low, high = scale_bounds(spec, reachable)
    if spec.initial_scale > 1 and not state.initialized and reachable:
        low = max(low, spec.initial_scale)
    desired = apply_bounds(low, high, desired)
    if desired != 0:
        return _Gate(desired, True)
    return _scale_to_zero(spec, state, now, reachable=reachable, activator_in_path=activator_in_path,
                          progress_deadline=progress_deadline)


def _mode(want: int, ebc: int, inactive: bool, ready: int) -> Mode:
    """Proxy when scaled to zero, short of burst capacity, unknown while inactive, or nothing is ready
    (the last case is what Knative's ServerlessService does when a Serve-mode revision has no endpoints)."""
    if want == 0 or ebc < 0 or (want == UNKNOWN and inactive) or ready == 0:
        return Mode.PROXY
    return Mode.SERVE


def _condition(spec: AutoscalingSpec, state: ScalerState, want: int, ready: int, reachable: bool,
               now: float) -> tuple[ActiveCondition, bool]:
    """The new Active condition and whether the initial scale has now been reached (spec §3.4 step 6)."""
    threshold = active_threshold(spec, reachable, state.initialized)
    initialized = state.initialized or ready >= threshold
    cond = state.active
    if want == 0 or threshold == 0:
        reason = TIMED_OUT if cond.activating and threshold > 0 else NO_TRAFFIC
        return cond.mark("False", *reason, now), initialized
    # An unknown want never wakes an inactive revision; only a real decision (> 0) does.
    stays_inactive = want < 0 and cond.inactive
    if ready < threshold:
        if stays_inactive:
            return cond.mark("False", *NO_TRAFFIC, now), initialized
        return cond.mark("Unknown", *QUEUED, now), initialized
    if stays_inactive:
        return cond, initialized
    return cond.mark("True", "", "", now), initialized


def scale(spec: AutoscalingSpec, state: ScalerState, decision: Decision, ready: int, now: float, *,
          reachable: bool = True, activator_in_path: bool | None = None,
          progress_deadline: float = 600.0) -> tuple[ScaleResult, ScalerState]:
    """Apply `decision` for a revision with `ready` ready instances at `now`.

    `activator_in_path` is the result of checking that requests really go through the activator; by
    default it is taken to be true once this scaler has had the revision in Proxy mode.
    """
    in_path = state.mode is Mode.PROXY if activator_in_path is None else activator_in_path
    gate = _want(spec, state, decision.desired, now, reachable=reachable, activator_in_path=in_path,
                 progress_deadline=progress_deadline)
    want = gate.desired
    replicas = want if gate.apply and want >= 0 else state.replicas
    mode = _mode(want, decision.ebc, state.active.inactive, ready)
    active, initialized = _condition(spec, state, want, ready, reachable, now)
    new_state = replace(state, active=active, initialized=initialized, replicas=replicas,
                        mode=mode, mode_since=state.mode_since if mode is state.mode else now)
    result = ScaleResult(
        want=want, replicas=replicas, changed=replicas != state.replicas, mode=mode,
        num_activators=decision.num_activators, active=active, actual_replicas=ready,
        desired_replicas=want if want >= 0 else None, recheck_after=gate.recheck, state=new_state)
    return result, new_state
