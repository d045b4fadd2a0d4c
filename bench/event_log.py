"""Throughput of the event log backends: concurrent single-event appends, then read+ack.

Run: `python bench/event_log.py [--n 20000] [--callers 200] [--backend sqlite] [--sync FULL]`.
Appends come from many concurrent callers (as broker ingress requests would), one event each,
so the sqlite backend's group commit is what is being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from wisp.eventing.log import EventLog, open_backend

PAYLOAD = b'{"specversion":"1.0","id":"x","source":"/bench","type":"bench"}' + b" " * 400


async def _appenders(log: EventLog, n: int, callers: int) -> float:
    per_caller = n // callers

    async def caller() -> None:
        for _ in range(per_caller):
            await log.append("bench", [PAYLOAD])

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller())
    return per_caller * callers / (time.perf_counter() - start)


async def _consume(log: EventLog, batch: int) -> tuple[float, int]:
    await log.create_consumer("bench", "c1", start="earliest")
    done = 0
    start = time.perf_counter()
    while True:
        records = await log.read("bench", "c1", batch, now=time.time())
        if not records:
            break
        await log.ack("bench", "c1", [r.offset for r in records])
        done += len(records)
    return done / (time.perf_counter() - start), done


async def run(backend: str, n: int, callers: int, sync: str, batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        kwargs: dict[str, Any] = {}
        if backend == "sqlite":
            kwargs = {"path": Path(tmp) / "log.db", "synchronous": sync}
        log = open_backend(backend, **kwargs)
        await log.open()
        try:
            await log.create_consumer("bench", "c0", start="earliest")
            appends = await _appenders(log, n, callers)
            consume, count = await _consume(log, batch)
            single_start = time.perf_counter()
            for _ in range(200):
                await log.append("bench", [PAYLOAD])
            single = 200 / (time.perf_counter() - single_start)
        finally:
            await log.close()
    return {"backend": backend, "sync": sync, "appends_per_s": round(appends),
            "sequential_appends_per_s": round(single),
            "read_ack_per_s": round(consume), "consumed": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    print(asyncio.run(run(args.backend, args.n, args.callers, args.sync, args.batch)))


if __name__ == "__main__":
    main()
