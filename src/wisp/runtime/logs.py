"""Per-instance log files: timestamped lines, a size cap with one rotated file, tail and follow.

Each line is stored as `<RFC 3339 UTC timestamp with ms> <text>` so `wisp service logs` can merge
instances by time and print either form. Files outlive their instance; the revision's GC removes
them. Everything here works on paths, so the CLI and dashboard can read logs without a backend.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from wisp.clock import Clock

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# One very long "line" (e.g. a dumped blob without newlines) is cut so memory stays bounded.
MAX_LINE_BYTES = 64 * 1024
_TS_LEN = len("2024-01-01T00:00:00.000Z")


def format_ts(ts: float) -> str:
    ms = int(ts * 1000) % 1000  # truncate, as gmtime does with the seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{ms:03d}Z"


def split_line(line: str) -> tuple[str, str]:
    """`(timestamp, text)` of a stored line; lines without our prefix keep an empty timestamp."""
    if len(line) > _TS_LEN and line[_TS_LEN] == " " and line[4] == "-" and line[_TS_LEN - 1] == "Z":
        return line[:_TS_LEN], line[_TS_LEN + 1:]
    return "", line


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class LogWriter:
    """Appends timestamped lines to one file, rotating to `<file>.1` past `max_bytes`.

    Input arrives as arbitrary chunks from a pipe; partial lines are held until their newline (or
    until they grow past MAX_LINE_BYTES) so every stored line has exactly one timestamp.
    """

    def __init__(self, path: Path, now: Callable[[], float], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self._now = now
        self._max = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: BinaryIO = open(path, "ab")  # noqa: SIM115 - lives as long as the writer
        self._size = self._f.tell()
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(self._partial) > MAX_LINE_BYTES:
            self._emit(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]
        self._f.flush()

    def write_line(self, text: str) -> None:
        """A line from wisp itself (e.g. why the command could not start)."""
        self._emit(text.encode())
        self._f.flush()

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = b""
        self._f.close()

    def _emit(self, line: bytes) -> None:
        record = format_ts(self._now()).encode() + b" " + line.rstrip(b"\r") + b"\n"
        if self._size + len(record) > self._max and self._size > 0:
            self._rotate()
        self._f.write(record)
        self._size += len(record)

    def _rotate(self) -> None:
        self._f.close()
        os.replace(self.path, rotated(self.path))
        self._f = open(self.path, "ab")  # noqa: SIM115
        self._size = 0


def _read_tail_bytes(path: Path, n: int, block: int = 8192) -> list[bytes]:
    """Up to the last `n` complete lines of one file, reading backwards in blocks."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        pos, buf = end, b""
        while pos > 0 and buf.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first piece may be a partial line
    return lines[-n:] if n > 0 else []


def tail(path: Path, n: int) -> list[str]:
    """The last `n` stored lines (with timestamps), continuing into the rotated file if needed."""
    lines = _read_tail_bytes(path, n)
    if len(lines) < n:
        lines = _read_tail_bytes(rotated(path), n - len(lines)) + lines
    return [b.decode(errors="replace") for b in lines]


def last_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines' text, without timestamps: what a failure message quotes."""
    return [split_line(line)[1] for line in tail(path, n)]


async def follow(path: Path, clock: Clock, *, from_start: bool = True, poll: float = 0.1,
                 until: Callable[[], bool] = lambda: False) -> AsyncIterator[str]:
    """Yield stored lines as they are written, surviving rotation.

    Stops once `until()` is true and the file has been read to its end (e.g. the instance exited),
    so a caller following a finished instance gets its whole log and then returns.
    """
    f: BinaryIO | None = None
    ino = -1
    partial = b""
    try:
        while True:
            # Read `until` before reading the file: lines written just before the end still count.
            done = until()
            if f is None:
                f, ino = _open_for_follow(path, from_start)
            if f is not None:
                chunk = f.read()
                if chunk:
                    *lines, partial = (partial + chunk).split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
                    continue
                if _was_rotated(path, ino):
                    f.close()
                    f, from_start, partial = None, True, b""
                    continue
            if done:
                return
            await clock.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _open_for_follow(path: Path, from_start: bool) -> tuple[BinaryIO | None, int]:
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return None, -1
    if not from_start:
        f.seek(0, os.SEEK_END)
    return f, os.fstat(f.fileno()).st_ino


def _was_rotated(path: Path, ino: int) -> bool:
    try:
        return path.stat().st_ino != ino
    except FileNotFoundError:
        return False
