"""Per-revision load statistics, the in-process stand-in for queue-proxy's stats reporter.

Knative's queue-proxy reports, every second, the *time-weighted* average number of requests in
flight (two 500 ms requests in one second average 1.0) and how many requests arrived. The meter
keeps the area under the concurrency curve up to the last change, so each arrival or departure costs
a subtraction and a multiply; `sample` closes the period and starts the next one. The load counted
here is in-flight *plus* waiting requests, because at zero instances the held requests are exactly
the demand the autoscaler must see (the activator's report in Knative).
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from wisp.autoscaler.window import Stat

__all__ = ["ConcurrencyMeter", "observe_cold_start"]

log = logging.getLogger("wisp.dataplane.coldstart")

COLD_START_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)


class ConcurrencyMeter:
    """Time-weighted concurrency and arrival count since the last `sample`."""

    __slots__ = ("_area", "_arrivals", "_level", "_since", "_start")

    def __init__(self, now: float) -> None:
        self._level = 0
        self._area = 0.0
        self._since = now
        self._start = now
        self._arrivals = 0

    @property
    def level(self) -> int:
        """Requests in flight or waiting right now."""
        return self._level

    def _advance(self, now: float) -> None:
        if now > self._since:
            self._area += self._level * (now - self._since)
            self._since = now

    # arrive/leave run twice per proxied request, so they inline `_advance`.
    def arrive(self, now: float) -> None:
        """A request for the revision was accepted."""
        if now > self._since:
            self._area += self._level * (now - self._since)
            self._since = now
        self._level += 1
        self._arrivals += 1

    def leave(self, now: float) -> None:
        """A request finished (answered, failed or abandoned)."""
        if now > self._since:
            self._area += self._level * (now - self._since)
            self._since = now
        self._level -= 1

    def sample(self, now: float) -> Stat:
        """Close the period ending at `now`: its average concurrency and arrivals per second.

        A zero-length period (two samples at the same instant) reports the current level, so a
        caller never divides by zero and never sees load vanish.
        """
        self._advance(now)
        elapsed = now - self._start
        if elapsed > 0:
            concurrency, rate = self._area / elapsed, self._arrivals / elapsed
        else:
            concurrency, rate = float(self._level), float(self._arrivals)
        self._area, self._start, self._arrivals = 0.0, now, 0
        return Stat(concurrency=concurrency, request_count=rate)


_histograms: dict[int, Histogram] = {}


def _cold_start_histogram(registry: CollectorRegistry) -> Histogram:
    # prometheus-client refuses a second registration of a name, so create it once per registry.
    hist = _histograms.get(id(registry))
    if hist is None:
        hist = Histogram("wisp_cold_start_seconds",
                         "Time requests waited for a revision with no ready instance",
                         ["revision"], buckets=COLD_START_BUCKETS, registry=registry)
        _histograms[id(registry)] = hist
    return hist


def observe_cold_start(revision: str, seconds: float, registry: CollectorRegistry = REGISTRY) -> None:
    """Record one request that waited `seconds` for the first instance of `revision`."""
    _cold_start_histogram(registry).labels(revision).observe(seconds)
    log.info("cold start: %s served after %.0f ms", revision, seconds * 1000.0,
             extra={"revision": revision, "cold_start_ms": round(seconds * 1000.0, 1)})
