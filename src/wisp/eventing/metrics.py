"""Prometheus metrics for brokers and triggers.

One `EventingMetrics` per registry: prometheus-client refuses to register the same metric name
twice, so the platform shares `default_metrics()` (the process-wide registry the lead mounts at
`/metrics`) while tests pass their own `CollectorRegistry` and read values back from it.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EventingMetrics", "default_metrics"]

_BROKER = ("namespace", "broker")
_TRIGGER = ("namespace", "broker", "trigger")
# Delivery latency spans sub-millisecond local hops up to retried deliveries that took minutes.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class EventingMetrics:
    """Counters, gauges and histograms, labelled by namespace/broker(/trigger)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = REGISTRY if registry is None else registry
        self.registry = reg
        self.accepted = Counter("wisp_broker_events_accepted", "Events durably accepted by broker ingress.",
                                _BROKER, registry=reg)
        self.rejected = Counter("wisp_broker_events_rejected", "Events refused by broker ingress, by HTTP code.",
                                (*_BROKER, "code"), registry=reg)
        self.delivered = Counter("wisp_trigger_events_delivered", "Events a subscriber accepted.",
                                 _TRIGGER, registry=reg)
        self.retried = Counter("wisp_trigger_events_retried", "Failed attempts scheduled for a retry.",
                               _TRIGGER, registry=reg)
        self.dead_lettered = Counter("wisp_trigger_events_dead_lettered", "Events sent to a dead-letter sink.",
                                     _TRIGGER, registry=reg)
        self.dropped = Counter("wisp_trigger_events_dropped", "Events given up on with no dead-letter sink.",
                               _TRIGGER, registry=reg)
        self.replies = Counter("wisp_trigger_replies", "Reply events published back into the broker.",
                               _TRIGGER, registry=reg)
        self.lag = Gauge("wisp_trigger_lag", "Events in the broker log not yet acknowledged by the trigger.",
                         _TRIGGER, registry=reg)
        self.latency = Histogram("wisp_trigger_delivery_latency_seconds",
                                 "From durable append to the subscriber's success answer.",
                                 _TRIGGER, buckets=_LATENCY_BUCKETS, registry=reg)


_default: EventingMetrics | None = None


def default_metrics() -> EventingMetrics:
    """The process-wide metrics on prometheus-client's default registry (created once)."""
    global _default
    if _default is None:
        _default = EventingMetrics()
    return _default
