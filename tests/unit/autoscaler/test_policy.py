"""One decision tick (spec §3.3, §3.5 worked examples)."""

from __future__ import annotations

import pytest

from wisp.api.autoscaling import AutoscalingSpec, resolve
from wisp.autoscaler.policy import (
    DeciderState,
    Decision,
    burst_capacity,
    decide,
    initial_decision,
    should_poke,
)
from wisp.config import Config

G = "autoscaling.knative.dev"
CFG = Config()
T0 = 1_700_000_000.0


def spec_of(cc: int = 0, config: Config = CFG, **anns: str) -> AutoscalingSpec:
    return resolve({f"{G}/{k.replace('_', '-')}": v for k, v in anns.items()}, config, cc)


def tick(spec: AutoscalingSpec, stable: float | None, panic: float | None = None, ready: int = 1,
         state: DeciderState | None = None, now: float = T0,
         reachable: bool = True) -> tuple[Decision, DeciderState]:
    state = state or DeciderState(last=initial_decision(spec))
    return decide(spec, state, stable, stable if panic is None else panic, ready, reachable, now)


def test_fifty_clients_with_unlimited_concurrency_need_one_pod() -> None:
    decision, _ = tick(spec_of(), 50.0, ready=1)
    assert (decision.desired, decision.panicking) == (1, False)


def test_fifty_clients_with_target_ten_need_eight_pods() -> None:
    decision, _ = tick(spec_of(target="10"), 50.0, ready=5)
    assert (decision.desired, decision.panicking) == (8, False)
    decision, _ = tick(spec_of(target="10"), 50.0, ready=1)  # from one pod this is also a panic
    assert (decision.desired, decision.panicking) == (8, True)


def test_burst_from_one_pod_panics_at_71() -> None:
    spec = spec_of()
    calm, _ = tick(spec, 10.0, panic=70.0, ready=1)
    assert (calm.desired, calm.panicking) == (1, False)
    burst, state = tick(spec, 10.0, panic=71.0, ready=1)
    assert (burst.desired_panic, burst.panicking, burst.desired) == (2, True, 2)
    assert state.panic_since == T0


def test_panic_starts_at_twice_the_ready_pods() -> None:
    spec = spec_of()
    assert not tick(spec, 0.0, panic=7 * 70.0, ready=4)[0].panicking   # 7 pods / 4 ready = 1.75
    assert tick(spec, 0.0, panic=8 * 70.0, ready=4)[0].panicking       # 8 / 4 = 2.0


def test_panic_holds_a_stable_window_after_the_last_tick_over_the_threshold() -> None:
    spec = spec_of()
    decision, state = tick(spec, 10.0, panic=140.0, ready=1, now=T0)
    assert decision.desired == 2
    t = T0
    while t < T0 + 60:
        t += 2
        decision, state = tick(spec, 10.0, panic=10.0, ready=2, state=state, now=t)
        assert (decision.panicking, decision.desired) == (True, 2), t  # panic never scales down
    decision, state = tick(spec, 10.0, panic=10.0, ready=2, state=state, now=T0 + 62)
    assert (decision.panicking, decision.desired) == (False, 1)
    assert state.max_panic_pods == 0


def test_a_new_over_threshold_tick_extends_panic() -> None:
    spec = spec_of()
    _, state = tick(spec, 0.0, panic=140.0, ready=1, now=T0)
    _, state = tick(spec, 0.0, panic=280.0, ready=2, state=state, now=T0 + 30)
    decision, state = tick(spec, 0.0, panic=0.0, ready=4, state=state, now=T0 + 62)
    assert (decision.panicking, decision.desired) == (True, 4)
    decision, _ = tick(spec, 0.0, panic=0.0, ready=4, state=state, now=T0 + 92)
    assert (decision.panicking, decision.desired) == (False, 2)


def test_panic_scales_up_to_the_larger_of_stable_and_panic() -> None:
    decision, _ = tick(spec_of(), 700.0, panic=200.0, ready=2)
    assert (decision.panicking, decision.desired) == (False, 10)
    decision, _ = tick(spec_of(), 1000.0, panic=700.0, ready=2)
    assert (decision.panicking, decision.desired) == (True, 15)


def test_scale_down_is_at_most_halving_when_reachable() -> None:
    spec = spec_of()
    assert tick(spec, 0.0, ready=8)[0].desired == 4
    assert tick(spec, 0.0, ready=5)[0].desired == 2
    assert tick(spec, 0.0, ready=1)[0].desired == 0
    assert tick(spec, 0.0, ready=8, reachable=False)[0].desired == 0


def test_scale_up_rate_limits_growth() -> None:
    spec = spec_of(config=CFG.with_overrides(autoscaler={"max-scale-up-rate": 2}))
    assert tick(spec, 700.0, panic=0.0, ready=2)[0].desired == 4
    assert tick(spec, 700.0, panic=0.0, ready=0)[0].desired == 2  # zero ready counts as one


@pytest.mark.parametrize(("ready", "panic", "ebc", "activators"), [
    (0, 0.0, -211, 3), (1, 0.0, -111, 4), (2, 0.0, -11, 5), (3, 0.0, 89, 6), (4, 0.0, 189, 7),
    (3, 50.0, 39, 6), (3, 89.5, -1, 6), (3, 89.0, 0, 6),
])
def test_excess_burst_capacity_with_default_tbc(ready: int, panic: float, ebc: int, activators: int) -> None:
    decision, _ = tick(spec_of(), 0.0, panic=panic, ready=ready)
    assert (decision.ebc, decision.num_activators) == (ebc, activators)


def test_burst_capacity_zero_and_minus_one() -> None:
    assert burst_capacity(spec_of(target_burst_capacity="0"), 10, 500.0) == (0, 2)
    assert burst_capacity(spec_of(target_burst_capacity="-1"), 1, 0.0) == (-1, 2)
    assert burst_capacity(spec_of(target_burst_capacity="-1"), 5, 0.0) == (-1, 5)
    assert burst_capacity(spec_of(cc=10, target_burst_capacity="15"), 3, 4.0) == (11, 2)


def test_scale_down_delay_holds_the_highest_recent_decision() -> None:
    spec = spec_of(scale_down_delay="10s")
    decision, state = tick(spec, 350.0, ready=5, now=T0)
    assert decision.desired == 5
    for t in (2, 4, 6, 8):
        decision, state = tick(spec, 0.0, ready=5, state=state, now=T0 + t)
        assert decision.desired == 5, t
    decision, state = tick(spec, 0.0, ready=5, state=state, now=T0 + 10)
    assert decision.desired == 2


def test_scale_down_delay_does_not_hold_scale_up_or_unreachable_revisions() -> None:
    spec = spec_of(scale_down_delay="10s")
    _, state = tick(spec, 70.0, panic=0.0, ready=1, now=T0)
    decision, state = tick(spec, 210.0, panic=0.0, ready=1, state=state, now=T0 + 2)
    assert (decision.desired, decision.panicking) == (3, False)
    decision, _ = tick(spec, 0.0, ready=3, state=state, now=T0 + 4, reachable=False)
    assert decision.desired == 0


def test_activation_scale_is_the_smallest_non_zero_scale() -> None:
    spec = spec_of(activation_scale="3")
    assert tick(spec, 1 / 60, ready=0)[0].desired == 3
    assert tick(spec, 0.0, ready=0)[0].desired == 0
    assert tick(spec, 700.0, panic=0.0, ready=10)[0].desired == 10


def test_rps_metric_targets_140_per_pod() -> None:
    spec = spec_of(metric="rps")
    assert tick(spec, 280.0, ready=2)[0].desired == 2
    assert tick(spec, 281.0, ready=2)[0].desired == 3


def test_without_metrics_the_previous_decision_stands() -> None:
    spec = spec_of()
    decision, state = tick(spec, None)
    assert decision == initial_decision(spec)
    assert decision.desired == -1
    first, state = tick(spec, 140.0, ready=2, state=state)
    again, same = tick(spec, None, ready=2, state=state, now=T0 + 2)
    assert again == first
    assert same is state


def test_initial_decision_keeps_the_activator_unless_tbc_is_zero() -> None:
    assert initial_decision(spec_of()).ebc < 0
    assert initial_decision(spec_of(target_burst_capacity="0")).ebc == 0


def test_a_restarted_decider_with_several_pods_starts_in_panic() -> None:
    spec = spec_of()
    state = DeciderState.fresh(spec, 3, T0)
    decision, _ = tick(spec, 0.0, ready=3, state=state, now=T0 + 2)
    assert (decision.panicking, decision.desired) == (True, 3)
    calm = DeciderState.fresh(spec, 1, T0)
    assert calm.panic_since is None
    assert tick(spec, 0.0, ready=1, state=calm, now=T0 + 2)[0].desired == 0


def test_poke_only_wakes_a_revision_decided_to_zero() -> None:
    assert should_poke(0, 1.0)
    assert not should_poke(0, 0.0)
    assert not should_poke(1, 5.0)
    assert not should_poke(-1, 5.0)
