"""A watchdog that kills instances' process groups when wisp dies without stopping them.

PR_SET_PDEATHSIG takes only an instance's leader down with wisp; whatever the app spawned (workers,
shells) stays in the leader's process group and would be orphaned until the next `wisp serve` reaps
it. The guardian is one tiny process per backend, in its own session (so a signal to wisp's group
does not reach it), reading "+PGID"/"-PGID" lines on a pipe from wisp. The pipe's write end lives
only in wisp, so EOF means wisp is gone — however it died — and the guardian SIGKILLs every group
still registered, then exits. A clean shutdown has unregistered every group first.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys

log = logging.getLogger("wisp.runtime.guardian")

GUARDIAN_SCRIPT = r"""
import os, signal, sys
groups = set()
for line in sys.stdin.buffer:  # ends at EOF: wisp has exited, cleanly or not
    pgid = int(line[1:])
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupGuardian:
    """Registers instance process groups with the watchdog process, starting it on first use."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._groups: set[int] = set()

    def watch(self, pgid: int) -> None:
        """Kill group `pgid` if wisp dies before `forget(pgid)`."""
        self._groups.add(pgid)
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """The group is gone (or wisp is stopping it itself): never kill it later."""
        if pgid in self._groups:
            self._groups.discard(pgid)
            self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """Let the watchdog exit (killing whatever is still registered)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _send(self, line: bytes) -> None:
        for _ in range(2):  # a dead watchdog is restarted once, with every group re-registered
            proc = self._running()
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                return
            except OSError:
                self._proc = None

    def _running(self) -> subprocess.Popen[bytes] | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", GUARDIAN_SCRIPT], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            log.warning("cannot start the process-group guardian: %s", exc)
            self._proc = None
            return None
        if self._proc.stdin is not None and self._groups:
            self._proc.stdin.write(b"".join(b"+%d\n" % g for g in self._groups))
        return self._proc
