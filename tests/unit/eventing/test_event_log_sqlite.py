"""SQLite-specific behaviour beyond the shared contract: failed transactions and error mapping."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from wisp.eventing.log import EventLogError, TemporaryLogError
from wisp.eventing.log.sqlite import SqliteEventLog, _Store

S = "ns/broker"


async def test_failed_commit_fails_the_batch_and_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SqliteEventLog(tmp_path / "e.db")
    await log.open()
    try:
        await log.create_consumer(S, "t1")
        assert await log.append(S, [b"a"]) == [1]
        real_flush = _Store.flush

        def broken_flush(self: _Store) -> Any:
            monkeypatch.setattr(_Store, "flush", real_flush)  # fail exactly once
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(_Store, "flush", broken_flush)
        with pytest.raises(EventLogError) as info:
            await log.append(S, [b"lost"])
        assert not isinstance(info.value, TemporaryLogError)
        assert await log.head(S) == 1
        # in-memory state was rebuilt from the file: the next offset is not skipped
        assert await log.append(S, [b"b"]) == [2]
        records = await log.read(S, "t1", 10, now=0.0)
        assert [(r.offset, r.data) for r in records] == [(1, b"a"), (2, b"b")]
    finally:
        await log.close()


def test_rejects_unknown_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteEventLog(tmp_path / "e.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_opening_a_file_that_is_not_a_database_fails_cleanly(tmp_path: Path) -> None:
    bogus = tmp_path / "e.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    log = SqliteEventLog(bogus)
    with pytest.raises(EventLogError):
        await log.open()
    with pytest.raises(EventLogError):  # still closed, not half-open
        await log.append(S, [b"x"])
