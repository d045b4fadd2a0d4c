"""What the eventing e2e tests share: receiver processes that record every request, the `steps`
fixture (Sequence/Parallel steps and sinks), and `apply`/`get`/`ready` against a `wisp serve`.

A receiver is a script run as `python script PORT OUT MODE [ARGS…]`: it serves on 127.0.0.1:PORT,
appends one JSON line per request to OUT, and answers as MODE says. Each test module writes its
own handler (what it records, which modes it knows) after `RECEIVER_PRELUDE`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.e2e.conftest import WispServer
from tests.support import free_port, wait_for_port

# The start of every receiver script: argv, a record() that appends under a lock, `_answer`, and a
# threading server class the script finishes with `Server(("127.0.0.1", port), H).serve_forever()`.
RECEIVER_PRELUDE = r'''
import json, sys, time, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

port, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()

class Answering(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def record(self, rec):
        with lock, open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
    def _answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Server(ThreadingHTTPServer):
    daemon_threads = True
'''


class Receiver:
    """One receiver process (see the module docstring), listening once the constructor returns."""

    def __init__(self, tmp: Path, name: str, script: str, script_name: str, *args: str) -> None:
        self.port = free_port()
        self.file = tmp / f"{name}.jsonl"
        self.file.touch()
        path = tmp / script_name
        path.write_text(script)
        self.proc = subprocess.Popen([sys.executable, str(path), str(self.port), str(self.file), *args])
        wait_for_port(self.port)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.file.read_text().splitlines() if line]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


R = TypeVar("R", bound=Receiver)


def receivers(start: Callable[..., R]) -> Iterator[Callable[..., R]]:
    """A fixture body: yields `start`, remembering what it started, and stops all of it after."""
    started: list[R] = []

    def make(*args: str) -> R:
        started.append(start(*args))
        return started[-1]

    yield make
    for receiver in started:
        receiver.stop()


# A step process. Modes (argv[3]):
#   append:S   reply with the same event, data {"trail": trail + [S]}   (a transforming step)
#   record     202, no reply                                            (a final sink)
#   fail       500                                                      (a broken step)
#   filter:T   echo the event back when ce-type == T, else 202 with no body (a Parallel filter)
STEP = RECEIVER_PRELUDE + r'''
class H(Answering):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.record({"headers": headers, "body": body.decode()})
        ce = {k: v for k, v in headers.items() if k.startswith("ce-")}
        if mode.startswith("append:"):
            trail = json.loads(body or b"{}").get("trail", []) + [mode[7:]]
            self._answer(200, {**ce, "content-type": "application/json"}, json.dumps({"trail": trail}).encode())
        elif mode == "fail":
            self._answer(500, {}, b"step failed")
        elif mode.startswith("filter:"):
            if headers.get("ce-type") == mode[7:]:
                self._answer(200, {**ce, "content-type": headers.get("content-type", "")}, body)
            else:
                self._answer(202, {}, b"")
        else:
            self._answer(202, {}, b"")

Server(("127.0.0.1", port), H).serve_forever()
'''


class Step(Receiver):
    def __init__(self, tmp: Path, name: str, mode: str) -> None:
        super().__init__(tmp, name, STEP, "step.py", mode)

    @property
    def dest(self) -> dict[str, str]:
        return {"uri": f"http://127.0.0.1:{self.port}/"}


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Callable[[str, str], Step]]:
    def start(name: str, mode: str) -> Step:
        return Step(tmp_path, name, mode)

    yield from receivers(start)


def apply(server: WispServer, *docs: dict[str, Any]) -> None:
    server.cli("apply", "-f", "-", input=yaml.safe_dump_all(list(docs)))


def get(server: WispServer, plural: str, name: str, group: str = "flows.knative.dev/v1") -> dict[str, Any]:
    resp = httpx.get(f"{server.api}/apis/{group}/namespaces/default/{plural}/{name}")
    return resp.json() if resp.status_code == 200 else {}


def ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])
