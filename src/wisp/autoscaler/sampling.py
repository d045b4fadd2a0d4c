"""How many instances to scrape each second, which ones, and how to scale the sample up (spec §3.1).

Scraping every instance of a large revision each second is wasteful; Knative scrapes a statistically
sufficient sample (95 % confidence, ±5 margin, assumed variance 100) and extrapolates. Instances younger
than the stable window are still warming up, so they are used only when there are not enough older ones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PodAge", "extrapolate", "sample_size", "scrape_order"]

# z² · variance / margin² = 1.96² · 100 / 5²
_X = 1.96**2 * 100 / 5**2


def sample_size(pods: int) -> int:
    """Pods to scrape out of `pods`: all of them up to 3, then the finite-population sample size."""
    if pods <= 3:
        return max(0, pods)
    return math.ceil(pods * _X / (pods + _X - 1))


@dataclass(frozen=True)
class PodAge:
    """An instance to scrape and when it started (monotonic seconds)."""

    name: str
    started: float


def scrape_order(pods: Sequence[PodAge], now: float, stable_window: float,
                 rng: random.Random | None = None) -> list[str]:
    """Names in the order to try them: older pods shuffled first, then the young ones shuffled.

    The caller scrapes down this list until it has `sample_size(len(pods))` successful stats, so young
    pods are reached only when old ones are missing or fail.
    """
    rng = rng or random.Random()
    old = [p.name for p in pods if now - p.started >= stable_window]
    young = [p.name for p in pods if now - p.started < stable_window]
    rng.shuffle(old)
    rng.shuffle(young)
    return old + young


def extrapolate(sampled: Sequence[float], pods: int) -> float:
    """Revision-wide total from sampled per-pod values: their mean times the number of pods."""
    if not sampled or pods <= 0:
        return 0.0
    return sum(sampled) / len(sampled) * pods
