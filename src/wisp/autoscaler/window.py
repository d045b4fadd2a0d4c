"""Time-bucketed metric windows with Knative's exact semantics (`pkg/autoscaler/aggregation`).

Every value lands in the bucket of its second; values of the same second are added, because the
scraped pod total and the activator's report for that second together make up the revision's load.
The averages deliberately ignore time before the first write and after the last one, so that a fresh
revision is judged on the data it has rather than on a window full of imaginary zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "MaxTimeWindow",
    "MetricWindows",
    "Stat",
    "TimedBuckets",
    "WeightedBuckets",
    "make_buckets",
    "smoothing_coefficient",
]

_PRECISION = 6
_MIN_EXPONENT = 0.2
_WEIGHT_PRECISION = 0.9999


def _floor_digits(value: float, digits: int = _PRECISION) -> float:
    """Truncate to `digits` decimals so float noise (1e-16) never turns 0 into one pod."""
    p = 10.0**digits
    return math.floor(value * p) / p


class TimedBuckets:
    """A ring of per-granularity buckets covering `window` seconds, averaged linearly.

    `window_average` is the sum of the valid buckets over their number: only buckets since the first
    write count (the first write resets after a window with no data), trailing seconds after the last
    write are excluded, and gaps shorter than the window count as zeros.
    """

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        if window <= 0 or granularity <= 0:
            raise ValueError("window and granularity must be positive")
        self.window = window
        self.granularity = granularity
        self.buckets = [0.0] * math.ceil(window / granularity)
        self.total = 0.0
        self.first: int | None = None
        self.last: int | None = None

    def _index(self, now: float) -> int:
        return math.floor(now / self.granularity)

    def _span(self, buckets: int) -> float:
        return buckets * self.granularity

    def record(self, now: float, value: float) -> None:
        """Add `value` to the bucket of `now`; values a window older than the last write are dropped."""
        idx = self._index(now)
        if self.last is None:
            self._reset(idx)
        elif idx != self.last:
            if self._span(self.last - idx) >= self.window:
                return
            if self.first is None or self.first > idx:
                self.first = idx
            if idx > self.last:
                self._advance(idx)
        self.buckets[idx % len(self.buckets)] += value
        self.total += value

    def _reset(self, idx: int) -> None:
        self.buckets = [0.0] * len(self.buckets)
        self.total = 0.0
        self.first = self.last = idx

    def _advance(self, idx: int) -> None:
        """Move the last write forward to `idx`, zeroing the skipped buckets (they hold stale data)."""
        assert self.last is not None
        if self._span(idx - self.last) >= self.window:
            self._reset(idx)
            return
        n = len(self.buckets)
        for i in range(self.last + 1, idx + 1):
            self.total -= self.buckets[i % n]
            self.buckets[i % n] = 0.0
        self.last = idx

    def is_empty(self, now: float) -> bool:
        """True when nothing was written during the last window (the caller has 'no data')."""
        return self.last is None or self._span(self._index(now) - self.last) > self.window

    def window_average(self, now: float) -> float:
        """The average over the valid buckets at `now`, 0 when a whole window passed without data."""
        if self.last is None or self.first is None:
            return 0.0
        idx = self._index(now)
        gap = idx - self.last
        n = len(self.buckets)
        written = self.last - self.first + 1
        if gap <= 0:
            return _floor_digits(self.total / min(written, n))
        if self._span(gap) >= self.window:
            return 0.0
        stale = sum(self.buckets[i % n] for i in range(self.last + 1, idx + 1))
        return _floor_digits((self.total - stale) / min(written, n - gap))


def smoothing_coefficient(buckets: int) -> float:
    """Decay so the weights of `buckets` buckets sum to 0.9999, but never below 0.2."""
    return max(1.0 - math.pow(1.0 - _WEIGHT_PRECISION, 1.0 / buckets), _MIN_EXPONENT)


class WeightedBuckets(TimedBuckets):
    """The alpha `weighted-exponential` aggregation: recent seconds weigh exponentially more."""

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        super().__init__(window, granularity)
        self.alpha = smoothing_coefficient(len(self.buckets))

    def window_average(self, now: float) -> float:
        if self.last is None or self.is_empty(now):
            return 0.0
        n = len(self.buckets)
        count = n
        multiplier = self.alpha
        idx = self._index(now)
        if idx > self.last:
            # Seconds since the last write are zeros: skip straight to their combined decay.
            zeros = idx - self.last
            multiplier *= (1 - self.alpha) ** zeros
            count -= zeros
        result = 0.0
        for i in range(count):
            result += self.buckets[(self.last - i) % n] * multiplier
            multiplier *= 1 - self.alpha
        return result


def make_buckets(aggregation: str, window: float, granularity: float = 1.0) -> TimedBuckets:
    """Buckets for an `AutoscalingSpec.aggregation` name."""
    if aggregation == "weighted-exponential":
        return WeightedBuckets(window, granularity)
    return TimedBuckets(window, granularity)


@dataclass(frozen=True)
class MaxTimeWindow:
    """The maximum value recorded during the last `duration` seconds, at `granularity` resolution.

    Used for scale-down-delay: a decision to scale down only takes effect once no higher decision was
    made for the whole delay. Two records in the same granule keep the larger one. Immutable, so the
    decider state that holds it stays a plain value.
    """

    duration: float
    granularity: float = 2.0
    maxima: tuple[tuple[int, int], ...] = ()

    @property
    def size(self) -> int:
        return max(1, math.ceil(self.duration / self.granularity))

    def record(self, now: float, value: int) -> MaxTimeWindow:
        """A window that also holds `value` at `now`."""
        index = math.floor(now) // max(1, int(self.granularity))
        maxima = list(self.maxima)
        # A newer value at least as large makes every older, smaller one irrelevant.
        while maxima and maxima[-1][1] <= value:
            maxima.pop()
        while maxima and maxima[0][0] <= index - self.size:
            maxima.pop(0)
        maxima.append((index, value))
        return replace(self, maxima=tuple(maxima))

    def current(self) -> int:
        """The largest value recorded within the window (0 when empty)."""
        return self.maxima[0][1] if self.maxima else 0


@dataclass(frozen=True)
class Stat:
    """One per-second report for a revision, from the instance gates (scraped) or the activator.

    `proxied_*` are the parts that came through the activator; the collector subtracts them because the
    activator reports those requests itself.
    """

    concurrency: float
    request_count: float = 0.0
    proxied_concurrency: float = 0.0
    proxied_request_count: float = 0.0
    pod: str = ""


class MetricWindows:
    """Stable and panic windows of both metrics for one revision (Knative's collector `collection`)."""

    def __init__(self, stable_window: float, panic_window: float, aggregation: str = "linear") -> None:
        self.concurrency_stable = make_buckets(aggregation, stable_window)
        self.concurrency_panic = make_buckets(aggregation, panic_window)
        self.rps_stable = make_buckets(aggregation, stable_window)
        self.rps_panic = make_buckets(aggregation, panic_window)

    def record(self, now: float, stat: Stat) -> None:
        concurrency = stat.concurrency - stat.proxied_concurrency
        rps = stat.request_count - stat.proxied_request_count
        self.concurrency_stable.record(now, concurrency)
        self.concurrency_panic.record(now, concurrency)
        self.rps_stable.record(now, rps)
        self.rps_panic.record(now, rps)

    def stable_and_panic(self, metric: str, now: float) -> tuple[float, float] | None:
        """(stable, panic) averages of `metric` ("concurrency" or "rps"), or None when there is no data."""
        stable, panic = ((self.rps_stable, self.rps_panic) if metric == "rps"
                         else (self.concurrency_stable, self.concurrency_panic))
        if stable.is_empty(now):
            return None
        return stable.window_average(now), panic.window_average(now)
