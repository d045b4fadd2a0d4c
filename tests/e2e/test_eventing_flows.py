"""Channels, Subscriptions, Sequence and Parallel end to end: `wisp serve` plus real step processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import WispServer, wait_until
from tests.support import free_port, wait_for_port

pytestmark = pytest.mark.e2e

# A step process. Modes (argv[3]):
#   append:S   reply with the same event, data {"trail": trail + [S]}   (a transforming step)
#   record     202, no reply                                            (a final sink)
#   fail       500                                                      (a broken step)
#   filter:T   echo the event back when ce-type == T, else 202 with no body (a Parallel filter)
STEP = r'''
import json, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

port, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock, open(out, "a") as f:
            f.write(json.dumps({"headers": headers, "body": body.decode()}) + "\n")
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
    def _answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Server(ThreadingHTTPServer):
    daemon_threads = True

Server(("127.0.0.1", port), H).serve_forever()
'''


class Step:
    def __init__(self, tmp: Path, name: str, mode: str) -> None:
        self.port = free_port()
        self.file = tmp / f"{name}.jsonl"
        self.file.touch()
        script = tmp / "step.py"
        script.write_text(STEP)
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port), str(self.file), mode])
        wait_for_port(self.port)

    @property
    def dest(self) -> dict[str, str]:
        return {"uri": f"http://127.0.0.1:{self.port}/"}

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.file.read_text().splitlines() if line]


@pytest.fixture
def steps(tmp_path: Path) -> Iterator[Callable[[str, str], Step]]:
    started: list[Step] = []

    def make(name: str, mode: str) -> Step:
        started.append(Step(tmp_path, name, mode))
        return started[-1]

    yield make
    for step in started:
        step.proc.kill()
        step.proc.wait()


def apply(server: WispServer, *docs: dict[str, Any]) -> None:
    server.cli("apply", "-f", "-", input=yaml.safe_dump_all(list(docs)))


def get(server: WispServer, plural: str, name: str, group: str = "flows.knative.dev/v1") -> dict[str, Any]:
    resp = httpx.get(f"{server.api}/apis/{group}/namespaces/default/{plural}/{name}")
    return resp.json() if resp.status_code == 200 else {}


def ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def post(server: WispServer, url: str, id_: str, type_: str, data: dict[str, Any] | None = None) -> httpx.Response:
    parts = httpx.URL(url)
    headers = {"host": parts.host, "ce-specversion": "1.0", "ce-id": id_, "ce-source": "/e2e", "ce-type": type_,
               "content-type": "application/json"}
    return httpx.post(f"http://127.0.0.1:{server.ingress_port}{parts.path}", headers=headers,
                      content=json.dumps(data or {}))


def test_three_step_sequence_transforms_step_by_step_and_delivers_the_final_reply(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    a, b, c, final = steps("a", "append:a"), steps("b", "append:b"), steps("c", "append:c"), steps("final", "record")
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": {"name": "seq"},
                        "spec": {"steps": [a.dest, b.dest, c.dest], "reply": final.dest}})
    seq = wait_until(lambda: (s := get(wisp_server, "sequences", "seq")) and ready(s) and s, 15, what="sequence ready")
    url = seq["status"]["address"]["url"]
    assert "/default/channels/seq-kn-sequence-0" in url

    assert post(wisp_server, url, "e1", "order.created", {"trail": []}).status_code == 202
    wait_until(final.records, 10, what="final reply")
    got = final.records()
    assert [json.loads(r["body"])["trail"] for r in got] == [["a", "b", "c"]]
    assert got[0]["headers"]["ce-type"] == "order.created"
    assert json.loads(b.records()[0]["body"])["trail"] == ["a"]  # step 2 saw step 1's output

    # Deleting the Sequence deletes the channels and subscriptions it built.
    wisp_server.cli("delete", "sequences", "seq")
    wait_until(lambda: not get(wisp_server, "channels", "seq-kn-sequence-0", "messaging.knative.dev/v1"), 10,
               what="owned channel deleted")


def test_parallel_delivers_to_the_matching_branch_only(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    fa, fb = steps("fa", "filter:type.a"), steps("fb", "filter:type.b")
    sa, sb = steps("sa", "record"), steps("sb", "record")
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Parallel", "metadata": {"name": "par"},
                        "spec": {"branches": [{"filter": fa.dest, "subscriber": sa.dest},
                                              {"filter": fb.dest, "subscriber": sb.dest}]}})
    par = wait_until(lambda: (p := get(wisp_server, "parallels", "par")) and ready(p) and p, 15, what="parallel ready")
    url = par["status"]["address"]["url"]
    for i, type_ in enumerate(("type.a", "type.b", "type.a")):
        assert post(wisp_server, url, f"p{i}", type_).status_code == 202
    wait_until(lambda: len(sa.records()) == 2 and len(sb.records()) == 1, 10, what="branch deliveries")
    assert [r["headers"]["ce-id"] for r in sa.records()] == ["p0", "p2"] or \
        sorted(r["headers"]["ce-id"] for r in sa.records()) == ["p0", "p2"]
    assert [r["headers"]["ce-id"] for r in sb.records()] == ["p1"]
    assert len(fa.records()) == 3 and len(fb.records()) == 3  # every filter saw every event


def test_failing_step_is_retried_then_dead_lettered(wisp_server: WispServer,
                                                    steps: Callable[[str, str], Step]) -> None:
    bad, dls, final = steps("bad", "fail"), steps("dls", "record"), steps("final2", "record")
    delivery = {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.05S", "deadLetterSink": dls.dest}
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": {"name": "broken"},
                        "spec": {"steps": [{**bad.dest, "delivery": delivery}], "reply": final.dest}})
    seq = wait_until(lambda: (s := get(wisp_server, "sequences", "broken")) and ready(s) and s, 15, what="ready")
    assert post(wisp_server, seq["status"]["address"]["url"], "x1", "t").status_code == 202
    wait_until(dls.records, 10, what="dead-lettered event")
    assert len(bad.records()) == 3  # first attempt + 2 retries
    dead = dls.records()[0]["headers"]
    assert dead["ce-id"] == "x1"
    assert dead["ce-knativeerrorcode"] == "500"
    assert dead["ce-knativeerrordest"] == bad.dest["uri"]
    assert final.records() == []


def test_channel_ingress_status_codes(wisp_server: WispServer) -> None:
    apply(wisp_server, {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel",
                        "metadata": {"name": "imc"}})
    ch = wait_until(lambda: (c := get(wisp_server, "inmemorychannels", "imc", "messaging.knative.dev/v1"))
                    and ready(c) and c, 10, what="channel ready")
    url = httpx.URL(ch["status"]["address"]["url"])
    base = f"http://127.0.0.1:{wisp_server.ingress_port}"
    assert post(wisp_server, str(url), "ok", "t").status_code == 202
    assert httpx.get(base + url.path, headers={"host": url.host}).status_code == 405
    assert httpx.post(base + url.path, headers={"host": url.host}, content=b"{}").status_code == 400
    missing = str(url).replace("/imc", "/nope")
    assert post(wisp_server, missing, "x", "t").status_code == 404
