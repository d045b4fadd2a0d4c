"""Applying decisions: bounds, initial scale, scale-to-zero gating, path mode, Active (spec §3.4, §3.7)."""

from __future__ import annotations

from dataclasses import replace

from wisp.api.autoscaling import AutoscalingSpec, resolve
from wisp.autoscaler.policy import DeciderState, Decision, decide, initial_decision
from wisp.autoscaler.scaler import ActiveCondition, Mode, ScaleResult, ScalerState, scale
from wisp.autoscaler.window import MetricWindows, Stat
from wisp.config import Config

G = "autoscaling.knative.dev"
CFG = Config()
T0 = 1_700_000_000.0


def spec_of(config: Config = CFG, **anns: str) -> AutoscalingSpec:
    return resolve({f"{G}/{k.replace('_', '-')}": v for k, v in anns.items()}, config, 0)


def decision(desired: int, ebc: int = -111) -> Decision:
    return Decision(desired=desired, ebc=ebc, num_activators=4)


def active_state(replicas: int = 1, since: float = T0, mode: Mode = Mode.PROXY) -> ScalerState:
    return ScalerState(active=ActiveCondition("True", since=since), mode=mode, mode_since=since,
                       replicas=replicas, initialized=True)


def inactive_state(replicas: int = 1, since: float = T0, mode_since: float = T0) -> ScalerState:
    cond = ActiveCondition("False", "NoTraffic", "The target is not receiving traffic.", since)
    return ScalerState(active=cond, mode=Mode.PROXY, mode_since=mode_since, replicas=replicas,
                       initialized=True)


def run(spec: AutoscalingSpec, state: ScalerState, d: Decision, ready: int, now: float,
        **kw: object) -> ScaleResult:
    result, new_state = scale(spec, state, d, ready, now, **kw)  # type: ignore[arg-type]
    assert result.state is new_state
    return result


def test_a_new_revision_starts_at_its_initial_scale_and_activates_when_ready() -> None:
    spec = spec_of()
    state = ScalerState.new(spec, T0)
    r = run(spec, state, initial_decision(spec), 0, T0)
    assert (r.want, r.replicas, r.changed, r.mode) == (-1, 1, False, Mode.PROXY)
    assert (r.active.status, r.active.reason) == ("Unknown", "Queued")
    assert (r.desired_replicas, r.actual_replicas) == (None, 0)
    r = run(spec, r.state, initial_decision(spec), 1, T0 + 3)
    assert (r.active.status, r.active.since, r.state.initialized) == ("True", T0 + 3, True)


def test_unknown_decisions_are_not_applied_once_active() -> None:
    spec = spec_of(min_scale="2")
    r = run(spec, active_state(replicas=5), decision(-1), 5, T0 + 100)
    assert (r.want, r.replicas, r.changed, r.active.status) == (-1, 5, False, "True")


def test_min_and_max_bound_the_decision() -> None:
    spec = spec_of(min_scale="2", max_scale="4")
    assert run(spec, active_state(), decision(0), 1, T0 + 1).replicas == 2
    assert run(spec, active_state(), decision(9), 1, T0 + 1).replicas == 4
    r = run(spec, active_state(), decision(3), 1, T0 + 1)
    assert (r.replicas, r.changed, r.desired_replicas) == (3, True, 3)


def test_min_scale_is_ignored_for_an_unreachable_revision() -> None:
    spec = spec_of(min_scale="2")
    r = run(spec, active_state(replicas=2), decision(0), 2, T0 + 100, reachable=False)
    assert (r.want, r.replicas, r.active.status) == (0, 2, "False")


def test_initial_scale_is_a_floor_until_reached_once() -> None:
    spec = spec_of(initial_scale="3")
    state = ScalerState.new(spec, T0)
    assert state.replicas == 3
    r = run(spec, state, decision(1), 2, T0 + 2)
    assert (r.replicas, r.active.status, r.state.initialized) == (3, "Unknown", False)
    r = run(spec, r.state, decision(1), 3, T0 + 4)
    assert (r.replicas, r.active.status, r.state.initialized) == (3, "True", True)
    r = run(spec, r.state, decision(1), 3, T0 + 6)
    assert (r.replicas, r.changed) == (1, True)


def test_zero_initial_scale_starts_inactive() -> None:
    cfg = CFG.with_overrides(autoscaler={"allow-zero-initial-scale": True})
    spec = spec_of(cfg, initial_scale="0")
    r = run(spec, ScalerState.new(spec, T0), initial_decision(spec), 0, T0)
    assert (r.replicas, r.active.status, r.active.reason, r.mode) == (0, "False", "NoTraffic", Mode.PROXY)


def test_an_active_revision_deactivates_only_after_a_stable_window() -> None:
    spec = spec_of()
    r = run(spec, active_state(), decision(0), 1, T0 + 20)
    assert (r.want, r.replicas, r.active.status, r.recheck_after) == (1, 1, "True", 40.0)
    r = run(spec, active_state(), decision(0), 1, T0 + 60)
    assert (r.want, r.replicas, r.changed, r.mode) == (0, 1, False, Mode.PROXY)
    assert (r.active.status, r.active.reason, r.active.since) == ("False", "NoTraffic", T0 + 60)


def test_inactive_revision_waits_the_grace_period_when_newly_proxied() -> None:
    spec = spec_of()
    state = inactive_state(since=T0, mode_since=T0)
    r = run(spec, state, decision(0), 1, T0 + 29)
    assert (r.replicas, r.recheck_after) == (1, 1.0)
    r = run(spec, state, decision(0), 1, T0 + 30)
    assert (r.replicas, r.changed, r.want) == (0, True, 0)


def test_fast_path_when_the_activator_was_already_in_the_path() -> None:
    spec = spec_of()
    state = inactive_state(since=T0 + 100, mode_since=T0)
    r = run(spec, state, decision(0), 1, T0 + 102)
    assert r.replicas == 0


def test_pod_retention_keeps_the_last_pod() -> None:
    spec = spec_of(scale_to_zero_pod_retention_period="2m")
    state = inactive_state(since=T0 + 100, mode_since=T0)
    r = run(spec, state, decision(0), 1, T0 + 102)
    assert (r.replicas, r.recheck_after) == (1, 118.0)
    assert run(spec, state, decision(0), 1, T0 + 220).replicas == 0
    # An unreachable revision does not keep its last pod.
    assert run(spec, state, decision(0), 1, T0 + 102, reachable=False).replicas == 0


def test_scale_to_zero_waits_for_the_activator_to_be_in_the_path() -> None:
    spec = spec_of()
    state = inactive_state(since=T0, mode_since=T0)
    r = run(spec, state, decision(0), 1, T0 + 100, activator_in_path=False)
    assert (r.replicas, r.recheck_after) == (1, 1.0)
    unprobed = spec_of(target_burst_capacity="-1")  # TBC -1: the activator is always in the path
    assert run(unprobed, state, decision(0), 1, T0 + 100, activator_in_path=False).replicas == 0


def test_disabled_scale_to_zero_keeps_one_pod() -> None:
    spec = spec_of(CFG.with_overrides(autoscaler={"enable-scale-to-zero": False}))
    r = run(spec, active_state(replicas=3), decision(0), 3, T0 + 1000)
    assert (r.want, r.replicas, r.active.status) == (1, 1, "True")


def test_activation_times_out_after_the_progress_deadline() -> None:
    spec = spec_of()
    state = ScalerState(active=ActiveCondition("Unknown", "Queued", "", T0), mode=Mode.PROXY,
                        mode_since=T0, replicas=1)
    r = run(spec, state, decision(0), 0, T0 + 630)
    assert (r.want, r.replicas, r.active.status) == (-1, 1, "Unknown")
    assert r.recheck_after == 0.0
    r = run(spec, state, decision(0), 0, T0 + 631)
    assert (r.want, r.replicas, r.active.status, r.active.reason) == (0, 0, "False", "TimedOut")
    r = run(spec, state, decision(0), 0, T0 + 100, progress_deadline=60.0)
    assert r.active.reason == "TimedOut"


def test_cold_start_from_zero() -> None:
    spec = spec_of()
    state = inactive_state(replicas=0)
    r = run(spec, state, decision(1, ebc=-211), 0, T0 + 500)
    assert (r.replicas, r.changed, r.mode) == (1, True, Mode.PROXY)
    assert (r.active.status, r.active.reason) == ("Unknown", "Queued")
    r = run(spec, r.state, decision(1, ebc=-111), 1, T0 + 502)
    assert (r.active.status, r.mode) == ("True", Mode.PROXY)


def test_unknown_want_never_wakes_an_inactive_revision() -> None:
    spec = spec_of()
    timed_out = replace(inactive_state(replicas=0), active=ActiveCondition("False", "TimedOut", "x", T0))
    r = run(spec, timed_out, decision(-1, ebc=0), 1, T0 + 5)
    assert (r.want, r.mode, r.active) == (-1, Mode.PROXY, timed_out.active)
    r = run(spec, timed_out, decision(-1, ebc=0), 0, T0 + 5)
    assert (r.active.status, r.active.reason) == ("False", "NoTraffic")


def test_serve_mode_needs_a_positive_want_burst_capacity_and_ready_pods() -> None:
    spec = spec_of()
    state = active_state(replicas=3, mode=Mode.PROXY, since=T0)
    r = run(spec, state, decision(3, ebc=89), 3, T0 + 10)
    assert (r.mode, r.state.mode_since) == (Mode.SERVE, T0 + 10)
    assert run(spec, r.state, decision(3, ebc=-11), 3, T0 + 12).mode is Mode.PROXY
    assert run(spec, r.state, decision(3, ebc=5), 0, T0 + 12).mode is Mode.PROXY
    kept = run(spec, r.state, decision(3, ebc=5), 3, T0 + 14)
    assert (kept.mode, kept.state.mode_since) == (Mode.SERVE, T0 + 10)
    assert run(spec, r.state, decision(-1, ebc=5), 3, T0 + 14).mode is Mode.SERVE


def test_condition_keeps_its_transition_time_while_unchanged() -> None:
    spec = spec_of()
    r = run(spec, active_state(replicas=2, since=T0), decision(2), 2, T0 + 50)
    assert r.active.since == T0
    assert r.num_activators == 4


class Revision:
    """Stats every second, a decision every 2 s, one instance that follows the replica count at once."""

    def __init__(self, spec: AutoscalingSpec, start: float) -> None:
        self.spec = spec
        self.windows = MetricWindows(spec.stable_window, spec.panic_window)
        self.decider = DeciderState(last=initial_decision(spec))
        self.scaler = replace(active_state(replicas=1, since=start - 100), mode=Mode.PROXY,
                              mode_since=start - 100)
        self.history: list[tuple[float, ScaleResult]] = []

    def second(self, now: float, concurrency: float) -> None:
        ready = self.scaler.replicas
        if ready:
            self.windows.record(now, Stat(concurrency=concurrency))
        if int(now) % 2 == 0:
            avgs = self.windows.stable_and_panic("concurrency", now)
            stable, panic = avgs if avgs else (None, None)
            d, self.decider = decide(self.spec, self.decider, stable, panic, ready, True, now)
            result, self.scaler = scale(self.spec, self.scaler, d, ready, now)
            self.history.append((now, result))

    def first_time(self, predicate: object) -> float:
        return next(t for t, r in self.history if predicate(r))  # type: ignore[operator]


def test_last_pod_goes_62s_after_the_last_request_with_the_activator_in_path() -> None:
    rev = Revision(spec_of(), T0)
    for i in range(400):
        rev.second(T0 + i, 1.0 if i < 100 else 0.0)
    inactive_at = rev.first_time(lambda r: r.active.status == "False")
    zero_at = rev.first_time(lambda r: r.replicas == 0)
    assert inactive_at == T0 + 160  # the stable window holds only zeros from here
    assert zero_at == T0 + 162


def test_last_pod_goes_90s_after_the_last_request_when_serving_directly() -> None:
    rev = Revision(spec_of(target_burst_capacity="0"), T0)
    for i in range(400):
        rev.second(T0 + i, 1.0 if i < 100 else 0.0)
    assert rev.history[10][1].mode is Mode.SERVE
    assert rev.first_time(lambda r: r.active.status == "False") == T0 + 160
    assert rev.first_time(lambda r: r.replicas == 0) == T0 + 190
