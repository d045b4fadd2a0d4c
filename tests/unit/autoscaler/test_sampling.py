"""Scrape sample size and extrapolation (spec §3.1)."""

from __future__ import annotations

import random

import pytest

from wisp.autoscaler.sampling import PodAge, extrapolate, sample_size, scrape_order


@pytest.mark.parametrize(("pods", "sample"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (10, 7), (100, 14),
                                              (1000, 16)])
def test_sample_size(pods: int, sample: int) -> None:
    assert sample_size(pods) == sample


def test_old_pods_are_tried_before_young_ones() -> None:
    pods = [PodAge("young-a", 950.0), PodAge("old-a", 0.0), PodAge("young-b", 990.0), PodAge("old-b", 100.0)]
    order = scrape_order(pods, now=1000.0, stable_window=60.0, rng=random.Random(7))
    assert set(order[:2]) == {"old-a", "old-b"}
    assert set(order[2:]) == {"young-a", "young-b"}


def test_extrapolation_scales_the_sample_mean_to_all_pods() -> None:
    assert extrapolate([2.0, 4.0], 10) == 30.0
    assert extrapolate([], 10) == 0.0
    assert extrapolate([5.0], 0) == 0.0
