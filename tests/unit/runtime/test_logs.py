"""Per-instance log files: line framing, timestamps, rotation, tail and follow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from wisp.clock import FakeClock
from wisp.runtime.logs import (
    MAX_LINE_BYTES,
    LogWriter,
    follow,
    format_ts,
    last_lines,
    rotated,
    split_line,
    tail,
)


def writer(path: Path, max_bytes: int = 10_000) -> LogWriter:
    return LogWriter(path, lambda: 1_700_000_000.25, max_bytes)


def test_chunks_are_framed_into_timestamped_lines(tmp_path: Path) -> None:
    w = writer(tmp_path / "a.log")
    w.feed(b"hel")
    w.feed(b"lo\r\nwor")
    assert tail(w.path, 10) == ["2023-11-14T22:13:20.250Z hello"]  # partial line held back
    w.feed(b"ld\n")
    w.close()
    assert last_lines(w.path, 10) == ["hello", "world"]


def test_unterminated_last_line_is_kept_on_close(tmp_path: Path) -> None:
    w = writer(tmp_path / "a.log")
    w.feed(b"no newline")
    w.close()
    assert last_lines(w.path, 1) == ["no newline"]


def test_a_huge_line_is_cut_so_memory_stays_bounded(tmp_path: Path) -> None:
    w = writer(tmp_path / "a.log", max_bytes=10 * MAX_LINE_BYTES)
    w.feed(b"x" * (MAX_LINE_BYTES * 2 + 5))
    w.close()
    assert [len(line) for line in last_lines(w.path, 5)] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]


def test_rotation_keeps_one_old_file_and_tail_spans_both(tmp_path: Path) -> None:
    w = writer(tmp_path / "a.log", max_bytes=300)
    for i in range(30):
        w.write_line(f"line {i:02d}")
    w.close()
    assert rotated(w.path).exists()
    assert w.path.stat().st_size <= 300 and rotated(w.path).stat().st_size <= 300
    assert last_lines(w.path, 3) == ["line 27", "line 28", "line 29"]
    got = last_lines(w.path, 12)
    assert got == [f"line {i:02d}" for i in range(18, 30)]


def test_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "nope.log", 5) == []


def test_tail_reads_backwards_through_large_files(tmp_path: Path) -> None:
    w = writer(tmp_path / "a.log", max_bytes=10**8)
    for i in range(5000):
        w.write_line(f"entry {i}")
    w.close()
    assert last_lines(w.path, 2) == ["entry 4998", "entry 4999"]
    assert len(tail(w.path, 4000)) == 4000


def test_split_line_and_format_ts() -> None:
    assert format_ts(0.9999) == "1970-01-01T00:00:00.999Z"
    assert split_line("2024-01-02T03:04:05.006Z hi there") == ("2024-01-02T03:04:05.006Z", "hi there")
    assert split_line("plain text") == ("", "plain text")


async def test_follow_yields_new_lines_across_rotation_and_stops_when_told(tmp_path: Path) -> None:
    clock = FakeClock()
    w = writer(tmp_path / "a.log", max_bytes=200)
    w.write_line("first")
    done = False
    got: list[str] = []

    async def reader() -> None:
        async for line in follow(w.path, clock, poll=0.1, until=lambda: done):
            got.append(split_line(line)[1])

    task = asyncio.ensure_future(reader())
    await clock.advance(0.1)
    for i in range(12):  # enough to rotate at least once
        w.write_line(f"more {i}")
        await clock.advance(0.1)
    w.write_line("last")
    done = True
    w.close()
    await clock.advance(0.2)
    await asyncio.wait_for(task, 1)
    assert got == ["first", *(f"more {i}" for i in range(12)), "last"]


async def test_follow_from_end_skips_history(tmp_path: Path) -> None:
    clock = FakeClock()
    w = writer(tmp_path / "a.log")
    w.write_line("old")
    got: list[str] = []
    stop = False

    async def reader() -> None:
        async for line in follow(w.path, clock, from_start=False, until=lambda: stop):
            got.append(split_line(line)[1])

    task = asyncio.ensure_future(reader())
    await clock.advance(0.1)
    w.write_line("new")
    stop = True
    await clock.advance(0.2)
    await asyncio.wait_for(task, 1)
    assert got == ["new"]
