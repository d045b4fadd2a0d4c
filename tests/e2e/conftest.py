"""A real `wisp serve` subprocess on free loopback ports, and a way to run the CLI against it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
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


# ---- serving e2e: a server per module, an isolated image cache, and ingress/API helpers ----------

SERVING_GROUP = "/apis/serving.knative.dev/v1"
PLURALS = {"Service": "services", "Configuration": "configurations", "Revision": "revisions",
           "Route": "routes"}


@dataclass
class ServingServer(WispServer):
    """A `wisp serve` whose CLI packs `--source` images into a private cache, with HTTP helpers."""

    cache: Path = field(default_factory=lambda: Path("/nonexistent"))
    _client: httpx.Client | None = None

    def env(self) -> dict[str, str]:
        return {**super().env(), "XDG_CACHE_HOME": str(self.cache)}

    @property
    def client(self) -> httpx.Client:
        """A keep-alive client (making one per request costs ~20 ms of TLS setup)."""
        if self._client is None:
            self._client = httpx.Client(timeout=10)
        return self._client

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        super().stop(sig)

    def cli_env(self, extra_env: dict[str, str], *args: str,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the CLI with extra environment variables; never raises on a non-zero exit."""
        return subprocess.run([sys.executable, "-m", "wisp", *args], env={**self.env(), **extra_env},
                              text=True, capture_output=True, timeout=timeout)

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def call(self, host: str, path: str = "/", *, method: str = "GET", timeout: float = 10,
             **kwargs: object) -> httpx.Response:
        """One request through the ingress with `Host: host`."""
        headers = {"Host": host, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return self.client.request(method, self.ingress + path, headers=headers, timeout=timeout,
                                   **kwargs)  # type: ignore[arg-type]

    def obj(self, kind: str, name: str, ns: str = "default") -> dict[str, Any]:
        """A serving object (Service, Configuration, Revision, Route) read from the API; {} if absent."""
        resp = self.client.get(f"{self.api}{SERVING_GROUP}/namespaces/{ns}/{PLURALS[kind]}/{name}")
        return resp.json() if resp.status_code == 200 else {}

    def objs(self, kind: str, ns: str = "default", selector: str = "") -> list[dict[str, Any]]:
        """Serving objects of one kind in `ns`, optionally filtered by a label selector."""
        params = {"labelSelector": selector} if selector else {}
        resp = self.client.get(f"{self.api}{SERVING_GROUP}/namespaces/{ns}/{PLURALS[kind]}", params=params)
        resp.raise_for_status()
        return list(resp.json().get("items") or [])

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
        docs = manifest if isinstance(manifest, list) else [manifest]
        self.cli("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def condition(obj: dict[str, Any], ctype: str = "Ready") -> dict[str, Any]:
    """The condition of that type in obj's status ({} when it has none yet)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return {}


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_for_value(read: Callable[[], Any], expected: Any, timeout: float = 15.0, what: str = "") -> None:
    """Poll `read()` until it equals `expected`; on timeout, fail showing the last value read."""
    last: list[Any] = []

    def settled() -> bool:
        last.append(read())
        return bool(last[-1] == expected)

    try:
        wait_until(settled, timeout, what=what or repr(expected))
    except AssertionError:
        raise AssertionError(f"{what or 'value'}: expected {expected!r}, last read {last[-1]!r}") from None


def _serving_server(base: Path, config: dict[str, Any] | None) -> ServingServer:
    config_path = None
    if config:
        config_path = base / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
    server = ServingServer(base / "data", free_port(), free_port(), config=config_path, cache=base / "cache")
    server.start()
    return server


@pytest.fixture(scope="module")
def serving_server(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    """One server for a whole test module; the module's `WISP_CONFIG` dict (if any) is its config.yaml."""
    server = _serving_server(tmp_path_factory.mktemp("wisp"), getattr(request.module, "WISP_CONFIG", None))
    yield server
    server.stop()


@pytest.fixture
def make_serving_server(tmp_path: Path) -> Iterator[Callable[..., ServingServer]]:
    """A factory for servers a test owns (to kill or restart); all are stopped afterwards."""
    servers: list[ServingServer] = []

    def make(config: dict[str, Any] | None = None, base: Path | None = None) -> ServingServer:
        root = base or tmp_path / f"wisp{len(servers)}"
        root.mkdir(exist_ok=True)
        servers.append(_serving_server(root, config))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


SERVING_APP = r'''
"""A small app for the serving e2e tests (stdlib only); BODY is what `/` answers."""
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time

BODY = os.environ.get("BODY", "hello")
release = threading.Event()
# With SPAWN_CHILD set the app has a child of its own (in its process group), like a worker pool.
child = subprocess.Popen(["sleep", "600"]) if os.environ.get("SPAWN_CHILD") else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def do_GET(self):
        if self.path == "/env":
            self._send(200, json.dumps(dict(os.environ)).encode())
        elif self.path == "/headers":
            self._send(200, json.dumps([[k, v] for k, v in self.headers.items()]).encode())
        elif self.path == "/slow":
            time.sleep(0.3)
            self._send(200, f"{BODY}".encode())
        elif self.path == "/pid":
            pids = {"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid if child else None}
            self._send(200, json.dumps(pids).encode())
        elif self.path == "/release":
            release.set()
            self._send(200, b"released")
        elif self.path == "/stream":
            release.clear()
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"first\n")
            released = release.wait(10)  # the last chunk is produced only after /release
            self._chunk(b"last\n" if released else b"timeout\n")
            self._chunk(b"")
        else:
            self._send(200, f"{BODY}".encode())

    def do_POST(self):
        digest, total = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(size)
                self.rfile.readline()
                digest.update(data)
                total += len(data)
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 65536))
                digest.update(data)
                total += len(data)
                left -= len(data)
        self._send(200, f"{total} {digest.hexdigest()}".encode())

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print(f"listening on {os.environ['PORT']}", flush=True)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
'''


def write_app(folder: Path, body: str | None = None) -> Path:
    """Write SERVING_APP as folder/app.py (with BODY fixed to `body` if given); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    source = SERVING_APP
    if body is not None:
        source = source.replace('os.environ.get("BODY", "hello")', repr(body))
    (folder / "app.py").write_text(source)
    return folder
