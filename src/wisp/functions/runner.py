"""`wisp func run`: serve a function from its folder, without the platform, restarting on change.

The function runs as `python -m wisp.runtime.funcserver` (the command its image runs) with the
project folder as working directory and the cached dependency folder on its path. A poll of file
modification times (cheap for a function-sized folder, and free of platform-specific watchers)
restarts it when the code changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from wisp.functions.builder import SKIPPED_PARTS
from wisp.functions.project import FuncConfig

Snapshot = dict[str, tuple[int, int]]
WATCHED_SUFFIXES = (".py", ".yaml", ".yml", ".txt", ".json", ".toml", ".cfg", ".ini", ".html")


def snapshot(project: Path) -> Snapshot:
    """(mtime ns, size) of every watched file, by relative path."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(project):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_PARTS and not d.startswith("."))
        for name in filenames:
            if not name.endswith(WATCHED_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[os.path.relpath(path, project)] = (st.st_mtime_ns, st.st_size)
    return out


def changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Files added, removed or modified between two snapshots, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def server_command(config: FuncConfig, deps: Path, port: int, python: str = sys.executable) -> list[str]:
    return [python, "-m", "wisp.runtime.funcserver", "--deps", str(deps), "--signature", config.invoke,
            "--port", str(port), config.entrypoint]


class LocalRunner:
    """One local server process for a project; `restart()` replaces it."""

    def __init__(self, project: Path, config: FuncConfig, deps: Path, port: int,
                 python: str = sys.executable) -> None:
        self.project = project
        self.config = config
        self.deps = deps
        self.port = port
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.config.env, "PORT": str(self.port), "K_SERVICE": self.config.name,
               "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(server_command(self.config, self.deps, self.port, self.python),
                                     cwd=self.project, env=env, start_new_session=True)

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def watch(self, interval: float = 0.5, on_restart: Callable[[list[str]], None] = lambda _: None,
              should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll for changes until `should_stop()`; restart the server when files change."""
        before = snapshot(self.project)
        while not should_stop():
            time.sleep(interval)
            after = snapshot(self.project)
            changes = changed_files(before, after)
            if changes:
                on_restart(changes)
                self.restart()
                before = after
