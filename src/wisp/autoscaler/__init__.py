"""The KPA autoscaler: metric windows, the pure decision policy and the pure scaler state machine.

A driving loop (elsewhere) records stats into `MetricWindows` every second, calls `decide` every 2 s
(or at once when `should_poke`), then `scale`, and writes the `ScaleResult` into the runtime and the
Revision status.
"""

from wisp.autoscaler.policy import DeciderState, Decision, decide, initial_decision, should_poke
from wisp.autoscaler.sampling import extrapolate, sample_size, scrape_order
from wisp.autoscaler.scaler import ActiveCondition, Mode, ScaleResult, ScalerState, scale
from wisp.autoscaler.window import MaxTimeWindow, MetricWindows, Stat, TimedBuckets, WeightedBuckets

__all__ = [
    "ActiveCondition",
    "DeciderState",
    "Decision",
    "MaxTimeWindow",
    "MetricWindows",
    "Mode",
    "ScaleResult",
    "ScalerState",
    "Stat",
    "TimedBuckets",
    "WeightedBuckets",
    "decide",
    "extrapolate",
    "initial_decision",
    "sample_size",
    "scale",
    "scrape_order",
    "should_poke",
]
