"""A real `wisp serve` subprocess on free loopback ports, and a way to run the CLI against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port, wait_for_port


@dataclass
class WispServer:
    data_dir: Path
    api_port: int
    ingress_port: int
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path("/dev/null"))

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "WISP_API": self.api, "COLUMNS": "200"}

    def start(self) -> None:
        cmd = [sys.executable, "-m", "wisp", "serve", "--data-dir", str(self.data_dir),
               "--api-addr", f"127.0.0.1:{self.api_port}", "--ingress-addr", f"127.0.0.1:{self.ingress_port}"]
        if self.config:
            cmd += ["--config", str(self.config)]
        self.log = self.data_dir.parent / f"serve-{self.api_port}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.api_port, timeout=20)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"wisp serve did not start:\n{self.log.read_text()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def cli(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "wisp", *args], env=self.env(), text=True,
                                capture_output=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"wisp {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def wisp_server(tmp_path: Path) -> Iterator[WispServer]:
    server = WispServer(tmp_path / "data", free_port(), free_port())
    server.start()
    yield server
    server.stop()
