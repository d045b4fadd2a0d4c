"""The in-instance server's adapters, driven as ASGI apps without sockets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from wisp.eventing.cloudevents import CloudEvent, from_http, to_binary
from wisp.runtime import funcserver
from wisp.runtime.funcserver import (
    CloudEventAdapter,
    EntrypointError,
    HandlerAdapter,
    Request,
    Response,
    WSGIAdapter,
    encode_result,
    kind_of,
    load_entrypoint,
    make_app,
)


async def call(app: Any, method: str = "GET", path: str = "/", body: bytes = b"",
               headers: dict[str, str] | None = None, query: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through an ASGI app; returns (status, headers, body)."""
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 5000), "scheme": "http",
             "http_version": "1.1"}
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    out_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(("result", "expected"), [
    ("hi", (200, b"hi", "text/plain; charset=utf-8")),
    (b"\x00", (200, b"\x00", "application/octet-stream")),
    ({"a": 1}, (200, b'{"a": 1}', "application/json")),
    (None, (204, b"", None)),
    (("gone", 410), (410, b"gone", "text/plain; charset=utf-8")),
    (Response("x", status=201, headers={"content-type": "text/x"}), (201, b"x", "text/x")),
])
def test_handler_results_become_http_responses(result: Any, expected: tuple[int, bytes, str | None]) -> None:
    status, body, headers = encode_result(result)
    assert (status, body, dict(headers).get("content-type")) == expected


async def test_plain_handler_gets_method_path_query_headers_and_body() -> None:
    seen: list[Request] = []

    def handle(request: Request) -> Any:
        seen.append(request)
        return {"echo": request.json(), "q": request.query["x"]}

    status, headers, body = await call(HandlerAdapter(handle), "POST", "/p", b'{"n": 2}',
                                       {"Content-Type": "application/json", "X-A": "1"}, b"x=7")
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == b'{"echo": {"n": 2}, "q": ["7"]}'
    assert (seen[0].method, seen[0].path, seen[0].headers["x-a"]) == ("POST", "/p", "1")


async def test_async_handler_is_awaited() -> None:
    async def handle(request: Request) -> str:
        return "async " + request.text()

    assert (await call(HandlerAdapter(handle), "POST", body=b"ok"))[2] == b"async ok"


async def test_a_raising_handler_answers_500_with_the_error_and_logs_the_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    def handle(request: Request) -> str:
        raise ValueError("bad input")

    status, _, body = await call(HandlerAdapter(handle), path="/x")
    assert status == 500 and b"ValueError: bad input" in body
    err = capsys.readouterr().err
    assert "GET /x" in err and "Traceback" in err and "bad input" in err


async def test_cloudevent_function_receives_the_event_and_its_reply_is_sent_in_binary_mode() -> None:
    def handle(event: CloudEvent) -> CloudEvent:
        return CloudEvent.create("reply.type", "/fn", {"got": event.data}, id="r1")

    headers, body = to_binary(CloudEvent.create("in.type", "/src", {"n": 1}, id="e1",
                                                datacontenttype="application/json"))
    status, out_headers, out_body = await call(CloudEventAdapter(handle), "POST", body=body, headers=headers)
    assert status == 200
    reply = from_http(out_headers.items(), out_body)
    assert (reply.type, reply.id, reply.json()) == ("reply.type", "r1", {"got": {"n": 1}})


async def test_cloudevent_function_without_reply_answers_204_and_bad_events_400() -> None:
    app = CloudEventAdapter(lambda event: None)
    headers, body = to_binary(CloudEvent.create("t", "/s", id="1"))
    assert (await call(app, "POST", body=body, headers=headers))[0] == 204
    status, _, text = await call(app, "POST", body=b"{}", headers={"content-type": "text/plain"})
    assert status == 400 and b"CloudEvent" in text


async def test_wsgi_apps_are_served() -> None:
    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
        return [environ["wsgi.input"].read(), environ["QUERY_STRING"].encode()]

    assert kind_of(wsgi, "http") == "wsgi"
    status, headers, body = await call(WSGIAdapter(wsgi), "POST", "/w", b"in-", query=b"q=1")
    assert (status, headers["x-path"], body) == (201, "/w", b"in-q=1")


def test_asgi_apps_are_recognised_and_served_unchanged() -> None:
    from starlette.applications import Starlette

    app = Starlette()
    assert kind_of(app, "http") == "asgi" and make_app(app, "http") is app
    assert kind_of(lambda request: None, "http") == "handler"
    assert kind_of(lambda event: None, "cloudevent") == "cloudevent"


def test_entrypoint_errors_say_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fnmod_ok.py").write_text("value = 3\ndef handle(r):\n    return 'x'\n")
    (tmp_path / "fnmod_broken.py").write_text("import does_not_exist_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_entrypoint("fnmod_ok:handle")(None) == "x"
    with pytest.raises(EntrypointError, match="module:function"):
        load_entrypoint("fnmod_ok")
    with pytest.raises(EntrypointError, match="no attribute 'nope'"):
        load_entrypoint("fnmod_ok:nope")
    with pytest.raises(EntrypointError, match="not callable"):
        load_entrypoint("fnmod_ok:value")
    with pytest.raises(EntrypointError, match="does_not_exist_xyz"):
        load_entrypoint("fnmod_broken:handle")
    for name in ("fnmod_ok", "fnmod_broken"):
        sys.modules.pop(name, None)


def test_serve_reports_a_bad_entrypoint_with_exit_code_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert funcserver.serve("no_such_module_abc:handle", port=0) == 1
    assert "cannot import 'no_such_module_abc'" in capsys.readouterr().err
