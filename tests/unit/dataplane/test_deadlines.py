"""The coarse deadline wheel: fires after the delay, never before, and not when removed."""

from __future__ import annotations

import asyncio

from wisp.dataplane.deadlines import DeadlineWheel


async def test_fires_after_delay_and_not_when_removed() -> None:
    loop = asyncio.get_running_loop()
    wheel = DeadlineWheel(loop, resolution=0.01)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    wheel.add(0.05, "a", lambda: fired.append(("a", loop.time() - start)))
    tick = wheel.add(0.05, "b", lambda: fired.append(("b", 0.0)))
    wheel.add(0.02, "c", lambda: fired.append(("c", loop.time() - start)))
    wheel.remove(tick, "b")
    assert len(wheel) == 2
    await asyncio.sleep(0.12)
    assert [name for name, _ in fired] == ["c", "a"]
    assert all(elapsed >= delay for (_, elapsed), delay in zip(fired, (0.02, 0.05), strict=True))
    assert len(wheel) == 0
    wheel.close()
