"""func.yaml, templates, local-run change detection and invocation requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wisp.eventing.cloudevents import CloudEvent, from_http, to_binary
from wisp.functions import FunctionError, create_project, load_config, render_template, save_config
from wisp.functions.invoke import build_invocation, describe_reply
from wisp.functions.project import FuncConfig, ScaleOptions
from wisp.functions.runner import changed_files, server_command, snapshot


@pytest.mark.parametrize(("template", "invoke"), [("http", "http"), ("cloudevents", "cloudevent")])
def test_templates_write_a_project_whose_own_tests_pass(tmp_path: Path, template: str, invoke: str) -> None:
    project = tmp_path / "hello"
    written = create_project(project, "hello", "python", template)
    assert {p.name for p in written} >= {"func.yaml", "main.py", "requirements.txt", "test_func.py"}
    config = load_config(project)
    assert (config.name, config.invoke, config.entrypoint) == ("hello", invoke, "main:handle")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_func.py"],
                          cwd=project, capture_output=True, text=True, timeout=60,
                          env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_create_refuses_bad_names_languages_templates_and_non_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(FunctionError, match="invalid function name"):
        create_project(tmp_path / "a", "Bad_Name")
    with pytest.raises(FunctionError, match="unknown language"):
        render_template("ok", "rust")
    with pytest.raises(FunctionError, match="unknown template"):
        render_template("ok", "python", "grpc")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(FunctionError, match="not empty"):
        create_project(tmp_path / "full", "full")


def test_func_yaml_round_trips_and_errors_name_the_field(tmp_path: Path) -> None:
    config = FuncConfig(name="fn", env={"A": "1"}, scale=ScaleOptions(min=1, max=3))
    save_config(tmp_path, config)
    assert load_config(tmp_path) == config
    assert config.scale.annotations() == {"autoscaling.knative.dev/min-scale": "1",
                                          "autoscaling.knative.dev/max-scale": "3"}
    (tmp_path / "func.yaml").write_text("name: fn\nentrypoint: nocolon\n")
    with pytest.raises(FunctionError, match=r"entrypoint: .*module:function"):
        load_config(tmp_path)
    (tmp_path / "func.yaml").write_text("name: fn\nunknown: 1\n")
    with pytest.raises(FunctionError, match="unknown"):
        load_config(tmp_path)
    with pytest.raises(FunctionError, match="not a function project"):
        load_config(tmp_path / "nowhere")


def test_changes_are_detected_but_caches_are_not(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("a = 1\n")
    before = snapshot(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "image.png").write_bytes(b"x")
    assert changed_files(before, snapshot(tmp_path)) == []
    (tmp_path / "main.py").write_text("a = 22\n")
    (tmp_path / "util.py").write_text("")
    assert changed_files(before, snapshot(tmp_path)) == ["main.py", "util.py"]


def test_local_server_command_is_the_function_server(tmp_path: Path) -> None:
    cmd = server_command(FuncConfig(name="fn", invoke="cloudevent"), tmp_path, 9000, "python3")
    assert cmd == ["python3", "-m", "wisp.runtime.funcserver", "--deps", str(tmp_path), "--signature",
                   "cloudevent", "--port", "9000", "main:handle"]


def test_http_invocations() -> None:
    assert build_invocation("http", None).method == "GET"
    post = build_invocation("http", '{"a": 1}')
    assert (post.method, post.headers["content-type"], post.body) == ("POST", "application/json", b'{"a": 1}')
    assert build_invocation("http", "plain").headers["content-type"] == "text/plain"


def test_cloudevent_invocations_and_replies() -> None:
    call = build_invocation("cloudevent", '{"n": 1}', event_type="t.x", source="/me", event_id="42")
    event = from_http(call.headers.items(), call.body)
    assert (event.type, event.source, event.id, event.json()) == ("t.x", "/me", "42", {"n": 1})
    headers, body = to_binary(CloudEvent.create("r.y", "/fn", {"ok": True}, id="7",
                                                datacontenttype="application/json"))
    text = describe_reply("cloudevent", dict(headers), body)
    assert "type: r.y" in text and "id: 7" in text and '{"ok":true}' in text.replace(" ", "")
    assert describe_reply("cloudevent", {}, b"") == ""
