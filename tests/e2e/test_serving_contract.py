"""Serving e2e: what a real app sees through the ingress — env, forwarded headers, streaming both
ways, and WebSocket pass-through."""

from __future__ import annotations

import base64
import hashlib
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import ServingServer, wait_until, write_app

pytestmark = pytest.mark.e2e
PY = sys.executable

WS_APP = r'''
import asyncio
import os

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(f"echo:{message}")


async def main():
    async with serve(echo, "127.0.0.1", int(os.environ["PORT"])) as server:
        await server.serve_forever()


asyncio.run(main())
'''


@pytest.fixture(scope="module")
def app_service(serving_server: ServingServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A service `app` with user env, a Secret and a ConfigMap wired in by valueFrom and envFrom."""
    app = write_app(tmp_path_factory.mktemp("app"))
    b64 = base64.b64encode
    serving_server.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
         "data": {"password": b64(b"s3cret").decode(), "token": b64(b"tok-1").decode()}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
         "data": {"mode": "fast", "level": "7"}},
        {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
         "metadata": {"name": "app", "namespace": "default"},
         "spec": {"template": {"spec": {"containers": [{
             "command": [PY, "app.py"], "workingDir": str(app),
             "env": [
                 {"name": "GREETING", "value": "hello world"},
                 {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                 {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
             ],
             "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"},
                         {"secretRef": {"name": "creds"}, "prefix": "S_"}],
         }]}}}},
    ])
    wait_until(lambda: serving_server.call("app.default.localhost").status_code == 200, timeout=20,
               what="service app to answer")
    return "app.default.localhost"


def test_app_sees_contract_env_user_env_secrets_and_configmaps(serving_server: ServingServer,
                                                                app_service: str) -> None:
    env = serving_server.call(app_service, "/env").json()
    assert env["K_SERVICE"] == "app"
    assert env["K_CONFIGURATION"] == "app"
    assert env["K_REVISION"] == "app-00001"
    assert env["PORT"].isdigit() and int(env["PORT"]) != serving_server.ingress_port
    assert env["GREETING"] == "hello world"
    assert env["DB_PASSWORD"] == "s3cret"
    assert env["MODE"] == "fast"
    assert (env["CM_mode"], env["CM_level"]) == ("fast", "7")
    assert (env["S_password"], env["S_token"]) == ("s3cret", "tok-1")


def test_app_sees_forwarded_headers_and_the_original_host(serving_server: ServingServer,
                                                         app_service: str) -> None:
    resp = serving_server.call(app_service, "/headers", headers={
        "X-Forwarded-For": "203.0.113.9", "Knative-Serving-Revision": "spoofed",
        "Knative-Serving-Namespace": "spoofed", "X-Custom": "kept"})
    headers = {k.lower(): v for k, v in resp.json()}
    assert headers["host"] == app_service
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "for=203.0.113.9" in headers["forwarded"] and "proto=http" in headers["forwarded"]
    assert headers["x-custom"] == "kept"
    assert "knative-serving-revision" not in headers and "knative-serving-namespace" not in headers
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id), len(flags)) == ("00", 32, 16, 2)

    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    again = serving_server.call(app_service, "/headers", headers={"traceparent": given})
    assert dict((k.lower(), v) for k, v in again.json())["traceparent"] == given


def test_streamed_response_arrives_chunk_by_chunk(serving_server: ServingServer, app_service: str) -> None:
    url = serving_server.ingress + "/stream"
    with httpx.Client(timeout=5) as client, client.stream("GET", url, headers={"Host": app_service}) as resp:
        chunks = resp.iter_raw()
        # The app produces its last chunk only after /release: a buffering proxy would stall here.
        head = b""
        while not head.endswith(b"\n"):
            head += next(chunks)
        assert head == b"first\n"
        assert serving_server.call(app_service, "/release").text == "released"
        assert b"".join(chunks) == b"last\n"


def _payload(total: int, piece: int = 1 << 16) -> Iterator[bytes]:
    block = bytes(range(256)) * (piece // 256)
    for _ in range(total // piece):
        yield block


def test_large_streamed_upload_reaches_the_app_intact(serving_server: ServingServer, app_service: str) -> None:
    total = 32 * 1024 * 1024
    expected = hashlib.sha256(b"".join(_payload(total))).hexdigest()
    resp = serving_server.call(app_service, "/upload", method="POST", content=_payload(total), timeout=30)
    assert resp.status_code == 200
    assert resp.text == f"{total} {expected}"


def test_websocket_passes_through_the_ingress(serving_server: ServingServer, tmp_path: Path) -> None:
    (tmp_path / "ws.py").write_text(WS_APP)
    serving_server.cli("service", "create", "ws", "--workdir", str(tmp_path), "--", PY, "ws.py")
    sock = socket.create_connection(("127.0.0.1", serving_server.ingress_port), timeout=5)
    with connect("ws://ws.default.localhost/", sock=sock, open_timeout=5) as ws:
        for text in ("one", "two", "x" * 100_000):
            ws.send(text)
            assert ws.recv(timeout=5) == f"echo:{text}"
        replies: list[str] = []
        reader = threading.Thread(target=lambda: replies.extend(str(ws.recv(timeout=5)) for _ in range(20)))
        reader.start()
        for i in range(20):
            ws.send(str(i))
        reader.join(10)
        assert replies == [f"echo:{i}" for i in range(20)]
