"""Project templates for `wisp func create NAME -l python -t http|cloudevents`.

Each template is a handler module, `func.yaml`, an empty `requirements.txt` and a test that calls
the handler directly, so a new project's tests pass before anything is built or deployed.
"""

from __future__ import annotations

from pathlib import Path

from wisp.functions.project import FuncConfig, FunctionError, dump_config

HTTP_MAIN = '''"""An HTTP function: wisp calls `handle` for every request.

`request` has .method, .path, .query, .headers, .body, .text() and .json(). Return a str, bytes,
a JSON value (dict/list), None (204), `(body, status)`, or `(body, status, headers)`.
Async functions (`async def handle`) work too.
"""

import os


def handle(request):
    name = request.query.get("name", [os.environ.get("GREETING_NAME", "world")])[0]
    if request.method == "POST" and request.body:
        return {"received": request.json() if request.headers.get("content-type", "").startswith(
            "application/json") else request.text()}
    return f"Hello, {name}!\\n"
'''

HTTP_TEST = '''from types import SimpleNamespace

from main import handle


def request(method="GET", query=None, body=b"", headers=None):
    return SimpleNamespace(method=method, path="/", query=query or {}, body=body, headers=headers or {},
                           text=lambda: body.decode(), json=lambda: __import__("json").loads(body))


def test_greets():
    assert handle(request(query={"name": ["wisp"]})) == "Hello, wisp!\\n"


def test_echoes_json():
    reply = handle(request("POST", body=b'{"a": 1}', headers={"content-type": "application/json"}))
    assert reply == {"received": {"a": 1}}
'''

CLOUDEVENTS_MAIN = '''"""A CloudEvents function: wisp calls `handle` with each event it receives.

`event` has .type, .source, .id, .subject, .data (JSON data arrives parsed), .attributes and .json().
Return a CloudEvent to reply (the broker routes the reply like any other event), or None.
"""

from wisp.eventing.cloudevents import CloudEvent


def handle(event):
    data = event.data if isinstance(event.data, dict) else {"value": event.data}
    return CloudEvent.create(
        type=f"{event.type}.reply",
        source="__NAME__",
        data={**data, "handled": True},
        datacontenttype="application/json",
    )
'''

CLOUDEVENTS_TEST = '''from wisp.eventing.cloudevents import CloudEvent

from main import handle


def test_replies_with_an_event():
    reply = handle(CloudEvent.create("greeting", "/test", {"name": "wisp"}, id="1"))
    assert reply.type == "greeting.reply"
    assert reply.data == {"name": "wisp", "handled": True}
'''

REQUIREMENTS = "# Dependencies of the function, one per line (pip requirement syntax).\n"
GITIGNORE = "__pycache__/\n*.pyc\n.pytest_cache/\n"

TEMPLATES: dict[str, tuple[str, str, str]] = {
    # template name → (func.yaml invoke, main.py, test_func.py)
    "http": ("http", HTTP_MAIN, HTTP_TEST),
    "cloudevents": ("cloudevent", CLOUDEVENTS_MAIN, CLOUDEVENTS_TEST),
}
LANGUAGES = ("python",)


def render_template(name: str, language: str = "python", template: str = "http",
                    namespace: str = "default") -> dict[str, str]:
    """The files of a new project (relative path → content); pure, so it is easy to test."""
    if language not in LANGUAGES:
        raise FunctionError(f"unknown language {language!r} (available: {', '.join(LANGUAGES)})")
    if template not in TEMPLATES:
        raise FunctionError(f"unknown template {template!r} (available: {', '.join(TEMPLATES)})")
    invoke, main, test = TEMPLATES[template]
    config = FuncConfig(name=name, invoke=invoke, namespace=namespace)
    return {
        "func.yaml": dump_config(config),
        "main.py": main.replace("__NAME__", name),
        "test_func.py": test,
        "requirements.txt": REQUIREMENTS,
        ".gitignore": GITIGNORE,
    }


def create_project(target: Path, name: str, language: str = "python", template: str = "http",
                   namespace: str = "default") -> list[Path]:
    """Write a new project into `target` (which must not exist or be empty); return the files."""
    from pydantic import ValidationError

    try:
        files = render_template(name, language, template, namespace)
    except ValidationError as exc:
        raise FunctionError(f"invalid function name {name!r}: {exc.errors()[0]['msg']}") from None
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FunctionError(f"{target} already exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for rel, content in files.items():
        path = target / rel
        path.write_text(content)
        written.append(path)
    return written
