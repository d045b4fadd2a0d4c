"""Per-second metric buckets, window averages and the max window (spec §3.1)."""

from __future__ import annotations

import pytest

from wisp.autoscaler.window import (
    MaxTimeWindow,
    MetricWindows,
    Stat,
    TimedBuckets,
    WeightedBuckets,
    smoothing_coefficient,
)

T0 = 1_700_000_000.0  # a realistic epoch, so bucket arithmetic is not accidentally aligned to zero


def test_values_in_the_same_second_are_added() -> None:
    b = TimedBuckets(60)
    b.record(T0 + 0.2, 3.0)   # scraped pods
    b.record(T0 + 0.9, 4.0)   # activator report for the same second
    assert b.window_average(T0 + 0.9) == 7.0


def test_a_fresh_window_averages_only_since_the_first_write() -> None:
    b = TimedBuckets(60)
    for i, v in enumerate([1.0, 2.0, 3.0, 4.0, 5.0]):
        b.record(T0 + i, v)
    assert b.window_average(T0 + 4) == 3.0


def test_gaps_shorter_than_the_window_count_as_zeros() -> None:
    b = TimedBuckets(60)
    b.record(T0, 10.0)
    b.record(T0 + 4, 10.0)
    assert b.window_average(T0 + 4) == 4.0


def test_trailing_seconds_without_data_are_excluded() -> None:
    b = TimedBuckets(60)
    for i in range(10):
        b.record(T0 + i, 6.0)
    assert b.window_average(T0 + 15) == 6.0
    assert not b.is_empty(T0 + 15)


def test_a_full_window_without_data_means_no_data() -> None:
    b = TimedBuckets(60)
    assert b.is_empty(T0)
    assert b.window_average(T0) == 0.0
    b.record(T0, 5.0)
    assert b.window_average(T0 + 59) == 5.0
    assert b.window_average(T0 + 60) == 0.0
    assert not b.is_empty(T0 + 60)
    assert b.is_empty(T0 + 61)


def test_a_window_long_gap_restarts_from_the_next_write() -> None:
    b = TimedBuckets(6)
    b.record(T0, 100.0)
    b.record(T0 + 10, 6.0)
    assert b.window_average(T0 + 10) == 6.0


def test_the_ring_keeps_only_the_last_window() -> None:
    b = TimedBuckets(6)
    for i in range(10):
        b.record(T0 + i, float(i))
    assert b.window_average(T0 + 9) == pytest.approx((4 + 5 + 6 + 7 + 8 + 9) / 6)


def test_skipped_seconds_overwrite_stale_ring_entries() -> None:
    b = TimedBuckets(6)
    for i in range(6):
        b.record(T0 + i, 10.0)
    b.record(T0 + 8, 1.0)  # seconds 6 and 7 had no data: they are zeros, not last lap's tens
    assert b.window_average(T0 + 8) == pytest.approx(31 / 6, abs=1e-6)


def test_trailing_stale_ring_entries_are_excluded() -> None:
    b = TimedBuckets(6)
    for i in range(6):
        b.record(T0 + i, float(i + 1))
    # At +8 the ring slots of +6/+7 still hold +0/+1's values; only +3..+5 are valid.
    assert b.window_average(T0 + 8) == pytest.approx((4 + 5 + 6) / 3)


def test_values_older_than_a_window_are_dropped_and_late_ones_counted() -> None:
    b = TimedBuckets(6)
    b.record(T0 + 10, 1.0)
    b.record(T0 + 4, 100.0)  # 6 s before the last write: outside the window
    assert b.window_average(T0 + 10) == 1.0
    b.record(T0 + 8, 3.0)    # late but inside: counted, and the window now starts there
    assert b.window_average(T0 + 10) == pytest.approx(4 / 3, abs=1e-6)


def test_averages_are_truncated_to_six_decimals() -> None:
    b = TimedBuckets(60)
    b.record(T0, 1 / 3)
    assert b.window_average(T0) == 0.333333
    b2 = TimedBuckets(60)
    for i in range(3):
        b2.record(T0 + i, 0.1)
    assert b2.window_average(T0 + 2) == 0.1


def test_smoothing_coefficient() -> None:
    assert smoothing_coefficient(60) == 0.2   # 1-(1e-4)^(1/60) = 0.142 is below the floor
    assert smoothing_coefficient(6) == pytest.approx(1 - 1e-4 ** (1 / 6))


def test_weighted_average_favours_recent_seconds() -> None:
    w = WeightedBuckets(4)
    w.alpha = 0.6  # Knative's documented example: [10, 10, 5, 5], newest last
    for i, v in enumerate([10.0, 10.0, 5.0, 5.0]):
        w.record(T0 + i, v)
    assert w.window_average(T0 + 3) == pytest.approx(5.544)
    r = WeightedBuckets(4)
    r.alpha = 0.6
    for i, v in enumerate([5.0, 5.0, 10.0, 10.0]):
        r.record(T0 + i, v)
    assert r.window_average(T0 + 3) == pytest.approx(9.072)


def test_weighted_average_decays_over_silent_seconds() -> None:
    w = WeightedBuckets(60)
    w.record(T0, 10.0)
    assert w.window_average(T0) == pytest.approx(2.0)
    assert w.window_average(T0 + 2) == pytest.approx(10 * 0.2 * 0.8**2)
    assert w.window_average(T0 + 61) == 0.0


def test_max_window_holds_the_largest_value_for_its_duration() -> None:
    w = MaxTimeWindow(10, 2)
    w = w.record(T0, 5).record(T0 + 2, 3).record(T0 + 8, 1)
    assert w.current() == 5
    w = w.record(T0 + 10, 1)  # T0's granule has left the 10 s window
    assert w.current() == 3
    w = w.record(T0 + 12, 1)
    assert w.current() == 1


def test_max_window_keeps_the_larger_of_two_records_in_one_granule() -> None:
    w = MaxTimeWindow(10, 2).record(T0, 2).record(T0 + 1, 7).record(T0 + 1.5, 4)
    assert w.current() == 7
    assert MaxTimeWindow(10).current() == 0


def test_metric_windows_subtract_proxied_traffic() -> None:
    m = MetricWindows(60, 6)
    m.record(T0, Stat(concurrency=5, request_count=20, proxied_concurrency=2, proxied_request_count=8))
    m.record(T0, Stat(concurrency=2, request_count=8))  # the activator's own report
    assert m.stable_and_panic("concurrency", T0) == (5.0, 5.0)
    assert m.stable_and_panic("rps", T0) == (20.0, 20.0)


def test_metric_windows_panic_window_reacts_faster() -> None:
    m = MetricWindows(60, 6)
    for i in range(60):
        m.record(T0 + i, Stat(concurrency=100.0 if i >= 54 else 0.0))
    stable, panic = m.stable_and_panic("concurrency", T0 + 59) or (0, 0)
    assert (stable, panic) == (10.0, 100.0)


def test_metric_windows_report_no_data_after_a_silent_window() -> None:
    m = MetricWindows(60, 6, "weighted-exponential")
    assert m.stable_and_panic("concurrency", T0) is None
    m.record(T0, Stat(concurrency=1.0))
    assert m.stable_and_panic("concurrency", T0 + 60) is not None
    assert m.stable_and_panic("concurrency", T0 + 61) is None
