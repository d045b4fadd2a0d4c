"""Invariants of the decider and scaler over arbitrary load, found with hypothesis."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from wisp.api.autoscaling import AutoscalingSpec, resolve
from wisp.autoscaler.policy import DeciderState, decide, initial_decision
from wisp.autoscaler.scaler import ScalerState, scale
from wisp.config import Config

G = "autoscaling.knative.dev"
T0 = 1_700_000_000.0
CFG = Config()


@st.composite
def specs(draw: st.DrawFn) -> AutoscalingSpec:
    low = draw(st.integers(0, 5))
    high = draw(st.sampled_from([0, low, low + 1, low + 7]))
    high = 0 if high == 0 else max(high, 1)
    anns = {
        f"{G}/min-scale": str(low), f"{G}/max-scale": str(high),
        f"{G}/target": str(draw(st.sampled_from([1, 10, 100]))),
        f"{G}/target-burst-capacity": str(draw(st.sampled_from([-1, 0, 211]))),
        f"{G}/scale-down-delay": draw(st.sampled_from(["0s", "6s"])),
        f"{G}/scale-to-zero-pod-retention-period": draw(st.sampled_from(["0s", "10s"])),
    }
    initial = draw(st.integers(1, 4))
    if high == 0 or initial <= high:
        anns[f"{G}/initial-scale"] = str(initial)
    act = draw(st.integers(2, 4))
    if low <= act and (high == 0 or act <= high):
        anns[f"{G}/activation-scale"] = str(act)
    spec = resolve(anns, CFG, 0)
    if high:
        assert spec.initial_scale <= high
    return spec


# Small whole loads hit the interesting region (a few pods around min/max) far more often than floats.
loads = st.one_of(st.integers(0, 60).map(float), st.floats(0, 5000))
ticks = st.lists(st.tuples(loads, loads, st.integers(0, 30), st.booleans(), st.booleans()),
                 min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(spec=specs(), steps=ticks)
def test_replicas_always_stay_within_bounds(spec: AutoscalingSpec,
                                            steps: list[tuple[float, float, int, bool, bool]]) -> None:
    decider = DeciderState(last=initial_decision(spec))
    scaler = ScalerState.new(spec, T0)
    now = T0
    for stable, panic, ready, reachable, no_data in steps:
        now += 2
        d, decider = decide(spec, decider, None if no_data else stable, panic, ready, reachable, now)
        result, scaler = scale(spec, scaler, d, ready, now, reachable=reachable)
        low = spec.min_scale if reachable else 0
        assert result.replicas >= 0
        assert result.want >= -1
        if spec.max_scale:
            assert result.replicas <= spec.max_scale
        if result.changed:
            assert result.replicas >= low


@settings(max_examples=150, deadline=None)
@given(spec=specs(), stable=loads, panic=loads, ready=st.integers(0, 200),
       reachable=st.booleans())
def test_scale_down_per_tick_is_at_most_halving(spec: AutoscalingSpec, stable: float, panic: float,
                                                ready: int, reachable: bool) -> None:
    decision, _ = decide(spec, DeciderState(last=initial_decision(spec)), stable, panic, ready, reachable, T0)
    assert decision.desired >= 0
    if reachable:
        assert decision.desired >= math.floor(max(1, ready) / spec.max_scale_down_rate)
    # Demand is always provisioned, up to the scale-up rate limit.
    max_up = math.ceil(spec.max_scale_up_rate * max(1, ready))
    assert decision.desired >= min(math.ceil(stable / spec.target), max_up)


@settings(max_examples=60, deadline=None)
@given(spec=specs(), loads=st.lists(st.floats(0, 1000), min_size=1, max_size=60))
def test_panic_never_scales_down(spec: AutoscalingSpec, loads: list[float]) -> None:
    state = DeciderState(last=initial_decision(spec))
    previous: int | None = None
    ready = 1
    now = T0
    for load in loads:
        now += 2
        decision, state = decide(spec, state, load / 4, load, ready, True, now)
        if decision.panicking and previous is not None:
            assert decision.desired >= previous
        previous = decision.desired if decision.panicking else None
        ready = max(1, decision.desired)
