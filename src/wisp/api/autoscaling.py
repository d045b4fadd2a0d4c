"""`autoscaling.knative.dev/*` annotations: keys, validation and the effective per-revision settings.

Validation mirrors Knative's `pkg/apis/autoscaling/annotation_validation.go` (ranges, messages, which key
is reported), so a manifest Knative rejects is rejected here with the same words. `resolve` turns the
annotations plus `config-autoscaler` into one frozen `AutoscalingSpec`; it never raises, because it runs
on objects that already passed validation (or on stored objects from an older, laxer version), and an
unparsable value simply falls back to the cluster default, as Knative's accessors do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from wisp.api.errors import FieldError
from wisp.config import Config

__all__ = [
    "ACTIVATION_SCALE",
    "CLASS",
    "GROUP",
    "HPA",
    "INITIAL_SCALE",
    "KPA",
    "MAX_SCALE",
    "METRIC",
    "METRIC_AGGREGATION",
    "MIN_SCALE",
    "PANIC_THRESHOLD",
    "PANIC_WINDOW",
    "SCALE_DOWN_DELAY",
    "SCALE_TO_ZERO_RETENTION",
    "TARGET",
    "TARGET_BURST_CAPACITY",
    "TARGET_UTILIZATION",
    "WINDOW",
    "AutoscalingSpec",
    "get_annotation",
    "panic_window_seconds",
    "parse_go_duration",
    "resolve",
    "resolve_target",
    "validate_annotations",
]

GROUP = "autoscaling.knative.dev"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
_DOMAIN_SUFFIX = ".knative.dev"

CONCURRENCY = "concurrency"
RPS = "rps"
CPU = "cpu"
LINEAR = "linear"
WEIGHTED_EXPONENTIAL = "weighted-exponential"
_WEIGHTED_EXPONENTIAL_ALT = "weightedExponential"

# Each setting is a priority list of keys: the kebab-case key first, then the legacy camelCase alias
# that Knative still honours (kmap.KeyPriority). The first key present wins.
CLASS = (f"{GROUP}/class",)
METRIC = (f"{GROUP}/metric",)
TARGET = (f"{GROUP}/target",)
WINDOW = (f"{GROUP}/window",)
MIN_SCALE = (f"{GROUP}/min-scale", f"{GROUP}/minScale")
MAX_SCALE = (f"{GROUP}/max-scale", f"{GROUP}/maxScale")
INITIAL_SCALE = (f"{GROUP}/initial-scale", f"{GROUP}/initialScale")
ACTIVATION_SCALE = (f"{GROUP}/activation-scale",)
TARGET_UTILIZATION = (f"{GROUP}/target-utilization-percentage", f"{GROUP}/targetUtilizationPercentage")
TARGET_BURST_CAPACITY = (f"{GROUP}/target-burst-capacity", f"{GROUP}/targetBurstCapacity")
PANIC_WINDOW = (f"{GROUP}/panic-window-percentage", f"{GROUP}/panicWindowPercentage")
PANIC_THRESHOLD = (f"{GROUP}/panic-threshold-percentage", f"{GROUP}/panicThresholdPercentage")
SCALE_DOWN_DELAY = (f"{GROUP}/scale-down-delay", f"{GROUP}/scaleDownDelay")
SCALE_TO_ZERO_RETENTION = (f"{GROUP}/scale-to-zero-pod-retention-period",
                           f"{GROUP}/scaleToZeroPodRetentionPeriod")
METRIC_AGGREGATION = (f"{GROUP}/metric-aggregation-algorithm", f"{GROUP}/metricAggregationAlgorithm")

WINDOW_MIN = 6.0
WINDOW_MAX = 3600.0
TARGET_MIN = 0.01
PANIC_WINDOW_MIN, PANIC_WINDOW_MAX = 1.0, 100.0
PANIC_THRESHOLD_MIN, PANIC_THRESHOLD_MAX = 110.0, 1000.0
_INT32_MAX = 2**31 - 1
_BUCKET_SECONDS = 1.0


# --------------------------------------------------------------------------------------------------
# Parsing with Go's grammar: Knative parses with strconv/time, so "60" is not a duration and " 5" is
# not an integer there. Python's own parsers are laxer, hence these small strict versions.

_GO_INT = re.compile(r"[+-]?\d+")
_GO_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?i:inf|infinity)")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def _parse_int(text: str) -> int | None:
    return int(text) if _GO_INT.fullmatch(text) else None


def _parse_float(text: str) -> float | None:
    return float(text) if _GO_FLOAT.fullmatch(text) else None


def parse_go_duration(text: str) -> float | None:
    """Seconds for a Go duration string (`1m30s`, `500ms`, `-5s`, `0`), or None if Go would reject it."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        m = _GO_DURATION_PART.match(body, pos)
        if not m or m.group(1) == ".":
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total


def _go_duration_str(seconds: float) -> str:
    """Render a whole-second bound the way Go's `time.Duration.String` does (`6s`, `1h0m0s`)."""
    s = int(seconds)
    if s == 0:
        return "0s"
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def _go_number_str(value: float) -> str:
    """`%v` of a Go float64: integral values print without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def get_annotation(annotations: Mapping[str, str], keys: tuple[str, ...]) -> tuple[str, str] | None:
    """The (key, value) of the first key present, honouring the canonical-before-legacy priority."""
    for key in keys:
        if key in annotations:
            return key, annotations[key]
    return None


# --------------------------------------------------------------------------------------------------
# Validation


class _Errors:
    """Accumulates errors with paths under `<path>.annotations.`."""

    def __init__(self, path: str) -> None:
        self.prefix = f"{path}.annotations." if path else "annotations."
        self.errors: list[FieldError] = []

    def add(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self.prefix + key, message))

    def invalid(self, key: str, value: str) -> None:
        self.add(key, f"invalid value: {value}")

    def out_of_bounds(self, key: str, value: str, low: str, high: str) -> None:
        self.add(key, f"expected {low} <= {value} <= {high}")


def validate_annotations(annotations: Mapping[str, str], config: Config, path: str) -> list[FieldError]:
    """Every problem with the autoscaling annotations, each reported on its own annotation's path."""
    errs = _Errors(path)
    _validate_class(annotations, errs)
    _validate_min_max(annotations, config, errs)
    _validate_floats(annotations, errs)
    _validate_window(annotations, errs)
    _validate_retention(annotations, errs)
    _validate_scale_down_delay(annotations, errs)
    _validate_metric(annotations, errs)
    _validate_algorithm(annotations, config, errs)
    _validate_initial_scale(annotations, config, errs)
    return errs.errors


def _validate_class(annotations: Mapping[str, str], errs: _Errors) -> None:
    found = get_annotation(annotations, CLASS)
    if found and found[1].endswith(_DOMAIN_SUFFIX) and found[1] not in (KPA, HPA):
        errs.invalid(*found)


def _int_ge0(annotations: Mapping[str, str], keys: tuple[str, ...], errs: _Errors) -> int:
    found = get_annotation(annotations, keys)
    if not found:
        return 0
    key, value = found
    parsed = _parse_int(value)
    if parsed is None:
        errs.invalid(key, value)
        return 0
    if parsed < 0 or parsed > _INT32_MAX:
        errs.out_of_bounds(key, value, "0", str(_INT32_MAX))
        return 0
    return parsed


def _validate_min_max(annotations: Mapping[str, str], config: Config, errs: _Errors) -> None:
    low = _int_ge0(annotations, MIN_SCALE, errs)
    high = _int_ge0(annotations, MAX_SCALE, errs)
    if high != 0 and high < low:
        # Knative names both keys here; one cause on max-scale keeps `details.causes[].field` a path.
        errs.add(MAX_SCALE[0], f"max-scale={high} is less than min-scale={low}")
    found_max = get_annotation(annotations, MAX_SCALE)
    limit = config.autoscaler.max_scale_limit
    if found_max and limit:
        if high > limit:
            errs.out_of_bounds(found_max[0], str(high), "1", str(limit))
        if high == 0:
            errs.add(found_max[0], f"max-scale=0 (unlimited), must be less than {limit}")
    _validate_activation_scale(annotations, low, high, errs)


def _validate_activation_scale(annotations: Mapping[str, str], low: int, high: int, errs: _Errors) -> None:
    found = get_annotation(annotations, ACTIVATION_SCALE)
    if not found:
        return
    key, value = found
    scale = _parse_int(value)
    if scale is None or abs(scale) > _INT32_MAX:
        errs.invalid(key, value)
    elif low > scale:
        errs.add(key, f"min-scale={low} is greater than activation-scale={scale}")
    elif high != 0 and high < scale:
        errs.add(key, f"max-scale={high} is less than activation-scale={scale}")
    elif scale < 2:
        errs.add(key, f"activation-scale={scale} must be greater than 1")


def _check_float_range(annotations: Mapping[str, str], keys: tuple[str, ...], low: float, high: float,
                       errs: _Errors) -> None:
    found = get_annotation(annotations, keys)
    if not found:
        return
    key, value = found
    parsed = _parse_float(value)
    if parsed is None:
        errs.invalid(key, value)
    elif parsed < low or parsed > high:
        errs.out_of_bounds(key, value, _go_number_str(low), _go_number_str(high))


def _validate_floats(annotations: Mapping[str, str], errs: _Errors) -> None:
    _check_float_range(annotations, PANIC_WINDOW, PANIC_WINDOW_MIN, PANIC_WINDOW_MAX, errs)
    _check_float_range(annotations, PANIC_THRESHOLD, PANIC_THRESHOLD_MIN, PANIC_THRESHOLD_MAX, errs)
    found = get_annotation(annotations, TARGET)
    if found:
        key, value = found
        target = _parse_float(value)
        if target is None:
            errs.invalid(key, value)
        elif target < TARGET_MIN:
            errs.add(key, f"target {value} should be at least {TARGET_MIN:g}")
    _check_float_range(annotations, TARGET_UTILIZATION, 1.0, 100.0, errs)
    found = get_annotation(annotations, TARGET_BURST_CAPACITY)
    if found:
        key, value = found
        tbc = _parse_float(value)
        if tbc is None or (tbc < 0 and tbc != -1):
            errs.invalid(key, value)


def _validate_window(annotations: Mapping[str, str], errs: _Errors) -> None:
    _check_duration_range(annotations, WINDOW, WINDOW_MIN, WINDOW_MAX, errs, whole_seconds=True)


def _validate_retention(annotations: Mapping[str, str], errs: _Errors) -> None:
    _check_duration_range(annotations, SCALE_TO_ZERO_RETENTION, 0, WINDOW_MAX, errs, whole_seconds=False)


def _validate_scale_down_delay(annotations: Mapping[str, str], errs: _Errors) -> None:
    _check_duration_range(annotations, SCALE_DOWN_DELAY, 0, WINDOW_MAX, errs, whole_seconds=True)


def _check_duration_range(annotations: Mapping[str, str], keys: tuple[str, ...], low: float, high: float,
                          errs: _Errors, *, whole_seconds: bool) -> None:
    """A Go-duration annotation within [low, high] (and, for most, in whole seconds, as Knative asks)."""
    found = get_annotation(annotations, keys)
    if not found:
        return
    key, value = found
    seconds = parse_go_duration(value)
    if seconds is None:
        errs.invalid(key, value)
    elif seconds < low or seconds > high:
        errs.out_of_bounds(key, value, _go_duration_str(low), _go_duration_str(high))
    elif whole_seconds and not _whole_seconds(seconds):
        errs.add(key, "must be specified with at most second precision")


def _whole_seconds(seconds: float) -> bool:
    return abs(seconds - round(seconds)) < 1e-9


def _validate_metric(annotations: Mapping[str, str], errs: _Errors) -> None:
    found = get_annotation(annotations, METRIC)
    if not found:
        return
    key, metric = found
    klass = annotations.get(CLASS[0], KPA)
    kpa_bad = klass == KPA and metric not in (CONCURRENCY, RPS)
    if kpa_bad or (klass == HPA and metric == ""):
        errs.invalid(key, metric)


def _validate_algorithm(annotations: Mapping[str, str], config: Config, errs: _Errors) -> None:
    # Other classes may define their own algorithms, so only the KPA's are checked. Knative checks only
    # an explicit class annotation; we also check the cluster default class, so a typo never goes
    # silently unnoticed on a default (KPA) revision.
    klass = annotations.get(CLASS[0], config.autoscaler.pod_autoscaler_class)
    found = get_annotation(annotations, METRIC_AGGREGATION)
    if klass != KPA or not found or found[1] == "":
        return
    if found[1] not in (LINEAR, WEIGHTED_EXPONENTIAL, _WEIGHTED_EXPONENTIAL_ALT):
        errs.invalid(*found)


def _validate_initial_scale(annotations: Mapping[str, str], config: Config, errs: _Errors) -> None:
    found = get_annotation(annotations, INITIAL_SCALE)
    if not found:
        return
    key, value = found
    scale = _parse_int(value)
    if scale is None:
        errs.invalid(key, value)
    elif scale < 0:
        errs.add(key, f"invalid value: {value} (must be greater than 0)")
    elif scale == 0 and not config.autoscaler.allow_zero_initial_scale:
        errs.add(key, f"invalid value: {value} (initial-scale=0 not allowed by cluster)")


# --------------------------------------------------------------------------------------------------
# Resolution into effective settings


@dataclass(frozen=True)
class AutoscalingSpec:
    """Every effective autoscaling setting of one revision (annotations over config-autoscaler).

    Durations are float seconds. `panic_threshold` is a ratio (2.0 for the default 200 %).
    `max_scale` 0 means unbounded. `target` is the per-pod value the scaler aims for; `total` is the
    per-pod capacity used for burst capacity and activator count.
    """

    klass: str = KPA
    metric: str = CONCURRENCY
    target: float = 70.0
    target_utilization: float = 0.7
    total: float = 100.0
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tbc: float = 211.0
    min_scale: int = 0
    max_scale: int = 0
    initial_scale: int = 1
    activation_scale: int = 1
    scale_down_delay: float = 0.0
    scale_to_zero_grace: float = 30.0
    pod_retention: float = 0.0
    enable_scale_to_zero: bool = True
    activator_capacity: float = 100.0
    aggregation: str = LINEAR


def resolve_target(metric: str, container_concurrency: int, config: Config,
                   target_annotation: float | None = None,
                   utilization_annotation: float | None = None) -> tuple[float, float, float]:
    """(TARGET, TOTAL, utilization) as Knative's `ResolveMetricTarget` computes them (spec §3.2).

    The annotation target is the per-pod capacity; with CC>0 it can never exceed CC, because the
    queue would refuse the excess anyway. `utilization_annotation` is a fraction (0.7).
    """
    cfg = config.autoscaler
    utilization = cfg.container_concurrency_target_percentage / 100.0
    if metric == RPS:
        total = cfg.requests_per_second_target_default
    else:
        total = float(container_concurrency) or cfg.container_concurrency_target_default
    if target_annotation is not None:
        total = target_annotation
        if metric == CONCURRENCY and container_concurrency > 0:
            total = min(target_annotation, float(container_concurrency))
    if utilization_annotation is not None:
        utilization = utilization_annotation
    return max(TARGET_MIN, total * utilization), total, utilization


def panic_window_seconds(stable_window: float, panic_percentage: float) -> float:
    """Panic window: stable * % rounded to whole seconds (half away from zero), at least one bucket."""
    rounded = math.floor(stable_window * panic_percentage / 100.0 + 0.5)
    return max(_BUCKET_SECONDS, float(rounded))


def _float_ann(annotations: Mapping[str, str], keys: tuple[str, ...],
               ok: tuple[float, float] = (-math.inf, math.inf)) -> float | None:
    found = get_annotation(annotations, keys)
    value = _parse_float(found[1]) if found else None
    return value if value is not None and ok[0] <= value <= ok[1] else None


def _int_ann(annotations: Mapping[str, str], keys: tuple[str, ...], low: int = 0) -> int | None:
    found = get_annotation(annotations, keys)
    value = _parse_int(found[1]) if found else None
    return value if value is not None and low <= value <= _INT32_MAX else None


def _duration_ann(annotations: Mapping[str, str], keys: tuple[str, ...], low: float,
                  high: float) -> float | None:
    found = get_annotation(annotations, keys)
    value = parse_go_duration(found[1]) if found else None
    return value if value is not None and low <= value <= high else None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def resolve(annotations: Mapping[str, str], config: Config, container_concurrency: int) -> AutoscalingSpec:
    """The effective settings for a revision; invalid annotation values fall back to config."""
    cfg = config.autoscaler
    found_class = get_annotation(annotations, CLASS)
    klass = found_class[1] if found_class else cfg.pod_autoscaler_class
    found_metric = get_annotation(annotations, METRIC)
    metric = found_metric[1] if found_metric and found_metric[1] else (CONCURRENCY if klass == KPA else CPU)
    target_ann = _float_ann(annotations, TARGET, (TARGET_MIN, math.inf))
    util_pct = _float_ann(annotations, TARGET_UTILIZATION, (1.0, 100.0))
    target, total, utilization = resolve_target(
        metric, container_concurrency, config, target_ann, None if util_pct is None else util_pct / 100.0)
    stable = _or(_duration_ann(annotations, WINDOW, WINDOW_MIN, WINDOW_MAX), cfg.stable_window)
    panic_pct = _or(_float_ann(annotations, PANIC_WINDOW, (PANIC_WINDOW_MIN, PANIC_WINDOW_MAX)),
                    cfg.panic_window_percentage)
    threshold = _or(_float_ann(annotations, PANIC_THRESHOLD, (PANIC_THRESHOLD_MIN, PANIC_THRESHOLD_MAX)),
                    cfg.panic_threshold_percentage)
    tbc = _float_ann(annotations, TARGET_BURST_CAPACITY, (-1.0, math.inf))
    if tbc is not None and -1 < tbc < 0:
        tbc = None
    return AutoscalingSpec(
        klass=klass, metric=metric, target=target, target_utilization=utilization, total=total,
        stable_window=stable, panic_window=panic_window_seconds(stable, panic_pct),
        panic_threshold=threshold / 100.0,
        max_scale_up_rate=cfg.max_scale_up_rate, max_scale_down_rate=cfg.max_scale_down_rate,
        tbc=_or(tbc, cfg.target_burst_capacity),
        min_scale=int(_or(_int_ann(annotations, MIN_SCALE), cfg.min_scale)),
        max_scale=int(_or(_int_ann(annotations, MAX_SCALE), cfg.max_scale)),
        initial_scale=_initial_scale(annotations, config),
        activation_scale=int(_or(_int_ann(annotations, ACTIVATION_SCALE, low=1), 1)),
        scale_down_delay=_or(_duration_ann(annotations, SCALE_DOWN_DELAY, 0.0, WINDOW_MAX),
                             cfg.scale_down_delay),
        scale_to_zero_grace=cfg.scale_to_zero_grace_period,
        pod_retention=_or(_duration_ann(annotations, SCALE_TO_ZERO_RETENTION, 0.0, WINDOW_MAX),
                          cfg.scale_to_zero_pod_retention_period),
        enable_scale_to_zero=cfg.enable_scale_to_zero,
        activator_capacity=cfg.activator_capacity,
        aggregation=_aggregation(annotations),
    )


def _initial_scale(annotations: Mapping[str, str], config: Config) -> int:
    """Knative's `GetInitialScale`: the annotation unless it asks for 0 where the cluster forbids it."""
    value = _int_ann(annotations, INITIAL_SCALE)
    if value is None or (value == 0 and not config.autoscaler.allow_zero_initial_scale):
        return config.autoscaler.initial_scale
    return value


def _aggregation(annotations: Mapping[str, str]) -> str:
    found = get_annotation(annotations, METRIC_AGGREGATION)
    if found and found[1] in (WEIGHTED_EXPONENTIAL, _WEIGHTED_EXPONENTIAL_ALT):
        return WEIGHTED_EXPONENTIAL
    return LINEAR
