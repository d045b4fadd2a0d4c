"""Autoscaling annotation validation and resolution (spec §1.7, §3.2)."""

from __future__ import annotations

import pytest

from wisp.api.autoscaling import (
    AutoscalingSpec,
    panic_window_seconds,
    parse_go_duration,
    resolve,
    validate_annotations,
)
from wisp.config import Config

G = "autoscaling.knative.dev"
PATH = "spec.template.metadata"
CFG = Config()


def errors(annotations: dict[str, str], config: Config = CFG) -> list[tuple[str, str]]:
    return [(e.field, e.message) for e in validate_annotations(annotations, config, PATH)]


def at(key: str) -> str:
    return f"{PATH}.annotations.{G}/{key}"


def test_a_full_set_of_valid_annotations_passes() -> None:
    anns = {
        f"{G}/class": "kpa.autoscaling.knative.dev", f"{G}/metric": "rps", f"{G}/target": "150",
        f"{G}/target-utilization-percentage": "80", f"{G}/min-scale": "1", f"{G}/max-scale": "10",
        f"{G}/initial-scale": "2", f"{G}/activation-scale": "3", f"{G}/window": "2m",
        f"{G}/panic-window-percentage": "20", f"{G}/panic-threshold-percentage": "150",
        f"{G}/target-burst-capacity": "-1", f"{G}/scale-down-delay": "30s",
        f"{G}/scale-to-zero-pod-retention-period": "1m30s",
        f"{G}/metric-aggregation-algorithm": "weighted-exponential",
        "example.com/unrelated": "whatever",
    }
    assert errors(anns) == []


def test_field_paths_without_a_prefix_start_at_annotations() -> None:
    errs = validate_annotations({f"{G}/min-scale": "x"}, CFG, "")
    assert errs[0].field == f"annotations.{G}/min-scale"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("min-scale", "-1", "expected 0 <= -1 <= 2147483647"),
    ("min-scale", "foo", "invalid value: foo"),
    ("min-scale", "1.5", "invalid value: 1.5"),
    ("max-scale", "-3", "expected 0 <= -3 <= 2147483647"),
    ("max-scale", "99999999999", "expected 0 <= 99999999999 <= 2147483647"),
    ("max-scale", " 3", "invalid value:  3"),
    ("target", "0", "target 0 should be at least 0.01"),
    ("target", "0.001", "target 0.001 should be at least 0.01"),
    ("target", "lots", "invalid value: lots"),
    ("target-utilization-percentage", "0", "expected 1 <= 0 <= 100"),
    ("target-utilization-percentage", "101", "expected 1 <= 101 <= 100"),
    ("target-utilization-percentage", "x", "invalid value: x"),
    ("panic-window-percentage", "0.5", "expected 1 <= 0.5 <= 100"),
    ("panic-window-percentage", "101", "expected 1 <= 101 <= 100"),
    ("panic-threshold-percentage", "100", "expected 110 <= 100 <= 1000"),
    ("panic-threshold-percentage", "1001", "expected 110 <= 1001 <= 1000"),
    ("panic-threshold-percentage", "high", "invalid value: high"),
    ("target-burst-capacity", "-2", "invalid value: -2"),
    ("target-burst-capacity", "-0.5", "invalid value: -0.5"),
    ("target-burst-capacity", "big", "invalid value: big"),
    ("window", "5s", "expected 6s <= 5s <= 1h0m0s"),
    ("window", "61m", "expected 6s <= 61m <= 1h0m0s"),
    ("window", "60", "invalid value: 60"),
    ("window", "6500ms", "must be specified with at most second precision"),
    ("scale-down-delay", "-1s", "expected 0s <= -1s <= 1h0m0s"),
    ("scale-down-delay", "2h", "expected 0s <= 2h <= 1h0m0s"),
    ("scale-down-delay", "1.5s", "must be specified with at most second precision"),
    ("scale-down-delay", "soon", "invalid value: soon"),
    ("scale-to-zero-pod-retention-period", "2h", "expected 0s <= 2h <= 1h0m0s"),
    ("scale-to-zero-pod-retention-period", "-1m", "expected 0s <= -1m <= 1h0m0s"),
    ("scale-to-zero-pod-retention-period", "forever", "invalid value: forever"),
    ("initial-scale", "-1", "invalid value: -1 (must be greater than 0)"),
    ("initial-scale", "0", "invalid value: 0 (initial-scale=0 not allowed by cluster)"),
    ("initial-scale", "two", "invalid value: two"),
    ("activation-scale", "1", "activation-scale=1 must be greater than 1"),
    ("activation-scale", "x", "invalid value: x"),
    ("metric", "cpu", "invalid value: cpu"),
    ("class", "foo.knative.dev", "invalid value: foo.knative.dev"),
    ("metric-aggregation-algorithm", "median", "invalid value: median"),
])
def test_each_invalid_value_is_reported_on_its_key(key: str, value: str, message: str) -> None:
    assert errors({f"{G}/{key}": value}) == [(at(key), message)]


@pytest.mark.parametrize(("key", "value"), [
    ("min-scale", "0"), ("max-scale", "0"), ("target", "0.01"), ("target-utilization-percentage", "1"),
    ("target-utilization-percentage", "100"), ("panic-window-percentage", "1"),
    ("panic-window-percentage", "100"), ("panic-threshold-percentage", "110"),
    ("panic-threshold-percentage", "1000"), ("target-burst-capacity", "0"),
    ("target-burst-capacity", "-1"), ("target-burst-capacity", "12.5"), ("window", "6s"),
    ("window", "1h"), ("window", "1m30s"), ("scale-down-delay", "0s"), ("scale-down-delay", "1h"),
    ("scale-to-zero-pod-retention-period", "0"), ("scale-to-zero-pod-retention-period", "1h"),
    ("initial-scale", "1"), ("activation-scale", "2"), ("metric", "concurrency"),
    ("class", "hpa.autoscaling.knative.dev"), ("class", "custom.example.com"),
    ("metric-aggregation-algorithm", "linear"), ("metric-aggregation-algorithm", "weightedExponential"),
])
def test_boundary_values_are_accepted(key: str, value: str) -> None:
    assert errors({f"{G}/{key}": value}) == []


def test_max_below_min_is_rejected_on_max_scale() -> None:
    assert errors({f"{G}/min-scale": "5", f"{G}/max-scale": "2"}) == [
        (at("max-scale"), "max-scale=2 is less than min-scale=5")]
    assert errors({f"{G}/min-scale": "5", f"{G}/max-scale": "0"}) == []


def test_activation_scale_must_lie_between_min_and_max() -> None:
    assert errors({f"{G}/min-scale": "5", f"{G}/activation-scale": "3"}) == [
        (at("activation-scale"), "min-scale=5 is greater than activation-scale=3")]
    assert errors({f"{G}/max-scale": "2", f"{G}/activation-scale": "3"}) == [
        (at("activation-scale"), "max-scale=2 is less than activation-scale=3")]
    assert errors({f"{G}/min-scale": "2", f"{G}/max-scale": "4", f"{G}/activation-scale": "3"}) == []


def test_zero_initial_scale_needs_the_cluster_to_allow_it() -> None:
    allow = CFG.with_overrides(autoscaler={"allow-zero-initial-scale": True})
    assert errors({f"{G}/initial-scale": "0"}, allow) == []


def test_max_scale_limit_caps_max_scale_when_set() -> None:
    limited = CFG.with_overrides(autoscaler={"max-scale-limit": 10})
    assert errors({f"{G}/max-scale": "20"}, limited) == [(at("max-scale"), "expected 1 <= 20 <= 10")]
    assert errors({f"{G}/max-scale": "0"}, limited) == [
        (at("max-scale"), "max-scale=0 (unlimited), must be less than 10")]
    assert errors({f"{G}/max-scale": "10"}, limited) == []
    assert errors({}, limited) == []
    assert errors({f"{G}/max-scale": "20"}) == []


def test_metric_values_depend_on_the_class() -> None:
    hpa = {f"{G}/class": "hpa.autoscaling.knative.dev"}
    assert errors({**hpa, f"{G}/metric": "memory"}) == []
    assert errors({**hpa, f"{G}/metric": ""}) == [(at("metric"), "invalid value: ")]
    assert errors({f"{G}/class": "custom.example.com", f"{G}/metric": "queue-depth"}) == []


def test_aggregation_algorithm_is_only_checked_for_the_kpa() -> None:
    anns = {f"{G}/metric-aggregation-algorithm": "median"}
    assert errors({**anns, f"{G}/class": "custom.example.com"}) == []
    hpa_default = CFG.with_overrides(autoscaler={"pod-autoscaler-class": "hpa.autoscaling.knative.dev"})
    assert errors(anns, hpa_default) == []


@pytest.mark.parametrize(("legacy", "value", "message"), [
    ("minScale", "-1", "expected 0 <= -1 <= 2147483647"),
    ("maxScale", "x", "invalid value: x"),
    ("initialScale", "-2", "invalid value: -2 (must be greater than 0)"),
    ("targetUtilizationPercentage", "0", "expected 1 <= 0 <= 100"),
    ("targetBurstCapacity", "-5", "invalid value: -5"),
    ("panicWindowPercentage", "200", "expected 1 <= 200 <= 100"),
    ("panicThresholdPercentage", "50", "expected 110 <= 50 <= 1000"),
    ("scaleDownDelay", "2h", "expected 0s <= 2h <= 1h0m0s"),
    ("scaleToZeroPodRetentionPeriod", "x", "invalid value: x"),
    ("metricAggregationAlgorithm", "median", "invalid value: median"),
])
def test_legacy_camel_case_aliases_are_validated_under_their_own_key(legacy: str, value: str,
                                                                     message: str) -> None:
    assert errors({f"{G}/{legacy}": value}) == [(at(legacy), message)]


def test_legacy_min_and_max_are_compared() -> None:
    assert errors({f"{G}/minScale": "3", f"{G}/maxScale": "1"}) == [
        (at("max-scale"), "max-scale=1 is less than min-scale=3")]


def test_the_canonical_key_wins_over_its_alias() -> None:
    anns = {f"{G}/min-scale": "2", f"{G}/minScale": "-7"}
    assert errors(anns) == []
    assert resolve(anns, CFG, 0).min_scale == 2
    assert resolve({f"{G}/maxScale": "4"}, CFG, 0).max_scale == 4


def test_every_error_is_reported_at_once() -> None:
    anns = {f"{G}/min-scale": "x", f"{G}/window": "1s", f"{G}/target": "0"}
    assert {field for field, _ in errors(anns)} == {at("min-scale"), at("window"), at("target")}


@pytest.mark.parametrize(("text", "seconds"), [
    ("6s", 6.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 0.5), ("1.5s", 1.5), ("-5s", -5.0),
    ("0", 0.0), ("2h45m", 9900.0), (".5m", 30.0),
])
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "60", "5 s", "s", "1d", "1.s5", "-", "."])
def test_non_go_durations_are_rejected(text: str) -> None:
    assert parse_go_duration(text) is None


# ---------------------------------------------------------------------------------------------- resolve


def test_defaults_resolve_to_knatives_numbers() -> None:
    spec = resolve({}, CFG, 0)
    assert spec == AutoscalingSpec()
    assert (spec.target, spec.total, spec.stable_window, spec.panic_window) == (70.0, 100.0, 60.0, 6.0)
    assert (spec.panic_threshold, spec.tbc, spec.initial_scale, spec.activation_scale) == (2.0, 211.0, 1, 1)


@pytest.mark.parametrize(("anns", "cc", "target", "total"), [
    ({}, 0, 70.0, 100.0),
    ({}, 10, 7.0, 10.0),
    ({f"{G}/target": "10"}, 0, 7.0, 10.0),
    ({f"{G}/target": "50"}, 10, 7.0, 10.0),
    ({f"{G}/target": "5"}, 10, 3.5, 5.0),
    ({f"{G}/target-utilization-percentage": "50"}, 0, 50.0, 100.0),
    ({f"{G}/metric": "rps"}, 0, 140.0, 200.0),
    ({f"{G}/metric": "rps"}, 10, 140.0, 200.0),
    ({f"{G}/metric": "rps", f"{G}/target": "500"}, 10, 350.0, 500.0),
    ({f"{G}/target": "0.01", f"{G}/target-utilization-percentage": "1"}, 0, 0.01, 0.01),
])
def test_target_resolution(anns: dict[str, str], cc: int, target: float, total: float) -> None:
    spec = resolve(anns, CFG, cc)
    assert spec.target == pytest.approx(target)
    assert spec.total == pytest.approx(total)


def test_config_defaults_feed_target_resolution() -> None:
    cfg = CFG.with_overrides(autoscaler={"container-concurrency-target-default": 50,
                                         "container-concurrency-target-percentage": 80})
    spec = resolve({}, cfg, 0)
    assert (spec.target, spec.total, spec.target_utilization) == (40.0, 50.0, 0.8)


@pytest.mark.parametrize(("stable", "pct", "panic"), [
    (60, 10, 6), (20, 10, 2), (25, 10, 3), (6, 10, 1), (6, 1, 1), (3600, 1, 36), (60, 100, 60)])
def test_panic_window_is_rounded_to_whole_seconds_and_at_least_one(stable: float, pct: float,
                                                                  panic: float) -> None:
    assert panic_window_seconds(stable, pct) == panic


def test_every_annotation_overrides_its_config_default() -> None:
    anns = {
        f"{G}/window": "2m", f"{G}/panic-window-percentage": "5", f"{G}/panic-threshold-percentage": "300",
        f"{G}/target-burst-capacity": "-1", f"{G}/min-scale": "1", f"{G}/max-scale": "9",
        f"{G}/initial-scale": "3", f"{G}/activation-scale": "2", f"{G}/scale-down-delay": "10s",
        f"{G}/scale-to-zero-pod-retention-period": "1m", f"{G}/metric-aggregation-algorithm":
        "weightedExponential",
    }
    spec = resolve(anns, CFG, 0)
    assert (spec.stable_window, spec.panic_window, spec.panic_threshold) == (120.0, 6.0, 3.0)
    assert (spec.tbc, spec.min_scale, spec.max_scale, spec.initial_scale) == (-1.0, 1, 9, 3)
    assert (spec.activation_scale, spec.scale_down_delay, spec.pod_retention) == (2, 10.0, 60.0)
    assert spec.aggregation == "weighted-exponential"


def test_config_only_settings_come_from_config() -> None:
    cfg = CFG.with_overrides(autoscaler={"enable-scale-to-zero": False, "scale-to-zero-grace-period": "45s",
                                         "max-scale-up-rate": 10, "max-scale-down-rate": 4,
                                         "activator-capacity": 50, "min-scale": 1, "max-scale": 5})
    spec = resolve({}, cfg, 0)
    assert not spec.enable_scale_to_zero
    assert (spec.scale_to_zero_grace, spec.max_scale_up_rate, spec.max_scale_down_rate) == (45.0, 10.0, 4.0)
    assert (spec.activator_capacity, spec.min_scale, spec.max_scale) == (50.0, 1, 5)


def test_zero_initial_scale_falls_back_unless_allowed() -> None:
    anns = {f"{G}/initial-scale": "0"}
    assert resolve(anns, CFG, 0).initial_scale == 1
    allow = CFG.with_overrides(autoscaler={"allow-zero-initial-scale": True})
    assert resolve(anns, allow, 0).initial_scale == 0


def test_invalid_values_fall_back_to_config() -> None:
    anns = {f"{G}/window": "2s", f"{G}/target": "0", f"{G}/min-scale": "-1",
            f"{G}/target-burst-capacity": "-0.5", f"{G}/panic-threshold-percentage": "50"}
    spec = resolve(anns, CFG, 0)
    assert (spec.stable_window, spec.target, spec.min_scale, spec.tbc, spec.panic_threshold) == (
        60.0, 70.0, 0, 211.0, 2.0)


def test_hpa_class_defaults_to_cpu() -> None:
    spec = resolve({f"{G}/class": "hpa.autoscaling.knative.dev"}, CFG, 0)
    assert (spec.klass, spec.metric) == ("hpa.autoscaling.knative.dev", "cpu")
