"""The function runtime's readiness probing: a fresh fork is noticed within milliseconds."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import pytest

from wisp.clock import SystemClock
from wisp.runtime.base import ProbeSpec
from wisp.runtime.function import _probe_readiness
from wisp.runtime.probes import AGGRESSIVE_INTERVAL


class Check:
    """Fails `failures` times, then succeeds; remembers when it was called."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []

    async def __call__(self, timeout: float) -> bool:
        self.calls.append(time.monotonic())
        return len(self.calls) > self.failures


async def probe_until_ready(probe: ProbeSpec, check: Check, timeout: float = 2.0) -> float:
    became: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    started = time.monotonic()

    def on_change(ok: bool) -> None:
        if ok and not became.done():
            became.set_result(time.monotonic() - started)

    task = asyncio.ensure_future(_probe_readiness(check, probe, SystemClock(), on_change))
    try:
        return await asyncio.wait_for(became, timeout)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("kind", ["tcp", "http"])
async def test_an_instance_that_starts_listening_is_ready_within_milliseconds(
        kind: Literal["tcp", "http"]) -> None:
    check = Check(failures=8)
    took = await probe_until_ready(ProbeSpec(kind), check)
    # The plain aggressive schedule would need 8 x 25 ms; the fast phase polls every millisecond.
    assert took < 8 * AGGRESSIVE_INTERVAL / 2, took


async def test_exec_probes_and_explicit_periods_keep_their_own_schedule() -> None:
    for probe in (ProbeSpec("exec", command=("true",)), ProbeSpec("tcp", period_seconds=0.05)):
        check = Check(failures=2)
        took = await probe_until_ready(probe, check)
        assert took >= 2 * min(AGGRESSIVE_INTERVAL, 0.05) * 0.9, (probe, took)
        assert len(check.calls) == 3
