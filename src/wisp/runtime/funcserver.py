"""The in-instance server of the function runtime: load the user's entrypoint, serve it on PORT.

`python -m wisp.runtime.funcserver [--deps DIR] [--signature http|cloudevent] module:attr`

The same command runs under every backend: as a plain process (process runtime, or the function
runtime's fallback) and inside a forked zygote child (`serve()` is called directly after fork, with
uvicorn and the adapters already imported). What `module:attr` names decides how it is served:

* an ASGI app (Starlette, FastAPI…: `app(scope, receive, send)`) is served as is;
* a WSGI app (Flask…: `app(environ, start_response)`) through a small thread-pool adapter;
* a plain `handle(request)` function (sync or async) gets a `Request` and may return a `Response`,
  `bytes`, `str`, a JSON value, `None`, or `(body, status[, headers])`;
* with `--signature cloudevent`, `handle(event)` gets a `CloudEvent` and may return one (the reply).

A handler that raises answers 500, prints its traceback to the instance log and keeps serving.
"""

from __future__ import annotations

import argparse
import asyncio
import encodings.idna  # noqa: F401 - preloaded, see below
import importlib
import inspect
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

# Imported here (not lazily) on purpose: the zygote imports this module, so all of this is paid
# for once per zygote instead of once per instance. Each one was found imported after fork;
# `encodings.idna` (above) alone cost a fork 3-7 ms: binding a socket to a host name encodes it
# with the idna codec, which pulls in `stringprep` and `unicodedata`.
import uvicorn
import uvicorn.lifespan.off
import uvicorn.lifespan.on
import uvicorn.loops.auto
import uvicorn.protocols.http.httptools_impl
import uvicorn.protocols.websockets.auto

from wisp.eventing.cloudevents import CloudEvent, CloudEventError, from_http, to_binary

# With `log_config=None` uvicorn configures no logging; its errors (an ASGI app that raised) still
# belong in the instance log, traceback included.
_errors = logging.getLogger("uvicorn.error")
if not _errors.handlers:
    _errors.addHandler(logging.StreamHandler())
    _errors.setLevel(logging.WARNING)

try:
    import uvicorn.loops.uvloop
    import uvloop  # noqa: F401 - preloaded, see above

    LOOP: Literal["uvloop", "asyncio"] = "uvloop"
except ImportError:  # pragma: no cover - uvloop is optional
    LOOP = "asyncio"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Signature = Literal["http", "cloudevent"]
SIGNATURES: tuple[Signature, ...] = ("http", "cloudevent")
MAX_BODY = 32 * 1024 * 1024


class EntrypointError(Exception):
    """The entrypoint cannot be loaded (bad `module:attr`, import failure, not callable)."""


@dataclass
class Request:
    """What a plain `handle(request)` function receives."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    """What a plain handler may return when it needs a status code or headers."""

    body: bytes | str | Any = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


# ---- loading -------------------------------------------------------------------------------


def load_entrypoint(entrypoint: str) -> Any:
    """Import `module:attr` (attr may be dotted); errors say what the user should fix."""
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise EntrypointError(f"entrypoint {entrypoint!r} must look like module:function")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise EntrypointError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EntrypointError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EntrypointError(f"{entrypoint} is not callable")
    return obj


def positional_arity(obj: Any) -> int:
    """How many positional arguments a callable takes (bound `self` excluded); -1 if unknown."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return -1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)


def is_async(obj: Any) -> bool:
    call = type(obj).__call__ if not inspect.isroutine(obj) and callable(obj) else None
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call)


def kind_of(obj: Any, signature: Signature) -> Literal["asgi", "wsgi", "handler", "cloudevent"]:
    """Classify the user's callable; ASGI and WSGI apps are recognised in both signatures."""
    arity = positional_arity(obj)
    if arity == 3 and is_async(obj):
        return "asgi"
    if (arity == 2 and not is_async(obj)) or hasattr(obj, "wsgi_app"):
        return "wsgi"
    return "cloudevent" if signature == "cloudevent" else "handler"


def make_app(obj: Any, signature: Signature) -> ASGIApp:
    """The ASGI app that serves `obj`."""
    kind = kind_of(obj, signature)
    if kind == "asgi":
        return obj
    if kind == "wsgi":
        return WSGIAdapter(obj)
    if kind == "cloudevent":
        return CloudEventAdapter(obj)
    return HandlerAdapter(obj)


# ---- ASGI plumbing -------------------------------------------------------------------------


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError("request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def scope_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def send_response(send: Send, status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k == b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def call_user(fn: Callable[..., Any], *args: Any) -> Any:
    """Async handlers run on the loop; sync ones in a thread so a slow one does not stall the server."""
    if is_async(fn):
        return await fn(*args)
    return await asyncio.to_thread(fn, *args)


async def answer_error(send: Send, where: str) -> None:
    """Print the traceback to the instance log and answer 500 with the error's last line."""
    text = traceback.format_exc()
    print(f"wisp: the function raised while handling {where}:\n{text}", file=sys.stderr, flush=True)
    last = text.strip().splitlines()[-1] if text.strip() else "internal error"
    await send_response(send, 500, f"{last}\n".encode(), [("content-type", "text/plain; charset=utf-8")])


async def lifespan_unsupported(receive: Receive, send: Send) -> None:
    """Plain handlers have no startup/shutdown hooks; acknowledge the lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def encode_result(result: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """A plain handler's return value as (status, body, headers)."""
    if isinstance(result, Response):
        status, headers, body = result.status, list(result.headers.items()), result.body
    elif isinstance(result, tuple) and 2 <= len(result) <= 3:
        body, status = result[0], int(result[1])
        headers = list(dict(result[2]).items()) if len(result) == 3 else []
    else:
        status, headers, body = 200, [], result
    if body is None:
        return (204 if status == 200 else status), b"", headers
    if isinstance(body, bytes):
        return status, body, headers or [("content-type", "application/octet-stream")]
    if isinstance(body, str):
        return status, body.encode(), headers or [("content-type", "text/plain; charset=utf-8")]
    return status, json.dumps(body).encode(), headers or [("content-type", "application/json")]


class _FunctionAdapter:
    """ASGI around a user function: lifespan declined, only HTTP scopes reach `handle`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan_unsupported(receive, send)
        if scope["type"] != "http":
            return None
        return await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class HandlerAdapter(_FunctionAdapter):
    """ASGI around a plain `handle(request) -> response` function."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope["method"], scope["path"],
                          parse_qs(scope.get("query_string", b"").decode("latin-1")),
                          scope_headers(scope), await read_body(receive))
        try:
            status, body, headers = encode_result(await call_user(self.fn, request))
        except Exception:
            return await answer_error(send, f"{request.method} {request.path}")
        await send_response(send, status, body, headers)


class CloudEventAdapter(_FunctionAdapter):
    """ASGI around `handle(event) -> CloudEvent | None`: binary, structured (and reply) over HTTP."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers, body = scope_headers(scope), await read_body(receive)
        try:
            event = json_payload(from_http(headers.items(), body))
        except CloudEventError as exc:
            text = f"not a valid CloudEvent: {exc}\n".encode()
            return await send_response(send, 400, text, [("content-type", "text/plain; charset=utf-8")])
        try:
            reply = await call_user(self.fn, event)
        except Exception:
            return await answer_error(send, f"event {event.type} {event.id}")
        if isinstance(reply, CloudEvent):
            out_headers, out_body = to_binary(reply)
            return await send_response(send, 200, out_body, out_headers.items())
        await send_response(send, 204, b"", [])


def json_payload(event: CloudEvent) -> CloudEvent:
    """Binary mode delivers bytes; a function wants `event.data` as the JSON value it was sent as."""
    if isinstance(event.data, bytes) and event.data and event.data_is_json():
        try:
            return event.with_data(event.json())
        except ValueError:
            return event
    return event


class WSGIAdapter:
    """ASGI around a WSGI app: the body is buffered, the app runs in a worker thread."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan_unsupported(receive, send)
        if scope["type"] != "http":
            return None
        environ = wsgi_environ(scope, await read_body(receive))
        try:
            status, headers, body = await asyncio.to_thread(self._run, environ)
        except Exception:
            return await answer_error(send, f"{scope['method']} {scope['path']}")
        await send_response(send, status, body, headers)

    def _run(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started[0], started[1], body


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    server = scope.get("server") or ("127.0.0.1", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": scope.get("root_path", ""),
        "PATH_INFO": scope["path"], "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": client[0], "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in scope_headers(scope).items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value if key == "CONTENT_TYPE" else environ[key]
        else:
            environ[f"HTTP_{key}"] = value
    return environ


# ---- serving -------------------------------------------------------------------------------


def add_paths(deps: str | None) -> None:
    """The code folder (cwd) first, then the dependency folder, ahead of wisp's own packages."""
    paths = [os.getcwd()]
    if deps:
        paths.append(os.path.abspath(deps))
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def serve(entrypoint: str, *, port: int, signature: Signature = "http", host: str = "127.0.0.1") -> int:
    """Load the entrypoint and serve it until SIGTERM; the return value is the exit code."""
    try:
        app = make_app(load_entrypoint(entrypoint), signature)
    except EntrypointError as exc:
        print(f"wisp: {exc}", file=sys.stderr, flush=True)
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        return 1
    # Our adapters have no startup hooks; only real ASGI apps get the lifespan protocol.
    adapted = isinstance(app, HandlerAdapter | CloudEventAdapter | WSGIAdapter)
    lifespan: Literal["auto", "off"] = "off" if adapted else "auto"
    config = uvicorn.Config(app, host=host, port=port, http="httptools", loop=LOOP, lifespan=lifespan,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=25,
                            log_config=None)  # uvicorn's dictConfig costs ~1 ms per start
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m wisp.runtime.funcserver")
    parser.add_argument("entrypoint", help="module:function or module:app")
    parser.add_argument("--deps", default=None, help="folder holding the function's dependencies")
    parser.add_argument("--signature", choices=SIGNATURES, default="http")
    parser.add_argument("--port", type=int, default=None, help="default: $PORT, else 8080")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    note = os.environ.pop("WISP_FUNC_FALLBACK", "")
    if note:
        print(f"wisp: started as a plain process, not from a zygote: {note}", flush=True)
    add_paths(args.deps)
    port = args.port if args.port is not None else int(os.environ.get("PORT", "8080"))
    return serve(args.entrypoint, port=port, signature=args.signature)


if __name__ == "__main__":
    sys.exit(main())
