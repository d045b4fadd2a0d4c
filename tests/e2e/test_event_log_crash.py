"""The SQLite event log keeps its promises across a SIGKILL of the process that wrote it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wisp.eventing.log import TemporaryLogError
from wisp.eventing.log.sqlite import SqliteEventLog

pytestmark = pytest.mark.e2e

N = 1000
S = "default/broker"

# Appends from 20 concurrent writers forever, printing each offset once `append` has returned.
# Before that it leases records 6..10 to consumer t1 without acking them.
WRITER = """
import asyncio, sys, time
from wisp.eventing.log.sqlite import SqliteEventLog

async def main(path, sync):
    log = SqliteEventLog(path, synchronous=sync)
    await log.open()
    await log.create_consumer("{S}", "t1")
    await log.append("{S}", [b"seed-%d" % i for i in range(1, 11)])
    await log.read("{S}", "t1", 10, now=time.time(), lease=3600)
    await log.ack("{S}", "t1", [1, 2, 3, 4, 5])
    print("LEASED", flush=True)

    async def writer(w):
        i = 0
        while True:
            data = "w%d-%d" % (w, i)
            (off,) = await log.append("{S}", [data.encode()])
            sys.stdout.write("ACK %d %s\\n" % (off, data))
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(writer(w) for w in range(20)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
""".replace("{S}", S)


def _run_and_kill(db: Path, sync: str) -> dict[int, bytes]:
    """Start the writer, SIGKILL it mid-stream after N acknowledged appends; return what it saw acked."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), sync],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acked: dict[int, bytes] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        assert proc.stdout.readline().strip() == "LEASED", proc.stderr.read() if proc.stderr else ""
        while len(acked) < N and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, off, data = line.split()
            acked[int(off)] = data.encode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= N, "writer did not acknowledge enough appends before the deadline"
    return acked


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
async def test_sigkill_loses_no_acknowledged_append_and_redelivers_leased(tmp_path: Path, sync: str) -> None:
    db = tmp_path / "events.db"
    acked = _run_and_kill(db, sync)

    log = SqliteEventLog(db)
    await log.open()
    try:
        head = await log.head(S)
        assert head >= max(acked)
        # t1 had read 6..10 without acking them: they are due again, before anything newer
        records = await log.read(S, "t1", head, now=time.time())
        assert [r.offset for r in records[:5]] == [6, 7, 8, 9, 10]
        assert [r.data for r in records[:5]] == [b"seed-%d" % i for i in range(6, 11)]
        stored = {r.offset: r.data for r in records}
        missing = {off: data for off, data in acked.items() if stored.get(off) != data}
        assert missing == {}
        assert sorted(stored) == list(range(6, head + 1))  # no holes in the offset sequence
        assert await log.lag(S, "t1") == head - 5
    finally:
        await log.close()


async def test_second_owner_of_the_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    first = SqliteEventLog(db)
    await first.open()
    try:
        second = SqliteEventLog(db, busy_timeout=0.1)
        with pytest.raises(TemporaryLogError) as info:
            await second.open()
        assert second.capabilities.is_retryable(info.value)  # the old owner may be shutting down
        assert await first.append(S, [b"still mine"]) == [1]
    finally:
        await first.close()
    reopened = SqliteEventLog(db, busy_timeout=0.1)
    await reopened.open()  # the lock is released on close
    try:
        assert await reopened.head(S) == 1
    finally:
        await reopened.close()
