"""`wisp func` end to end: create → build → deploy → invoke against a real `wisp serve`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import WispServer

pytestmark = pytest.mark.e2e

STARLETTE_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def info(request):
    return JSONResponse({"framework": "starlette", "path": request.url.path})

app = Starlette(routes=[Route("/{rest:path}", info)])
'''


def func(server: WispServer, tmp_path: Path, *args: str, check: bool = True,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `wisp func …` with a private build cache, against the test's server."""
    env = {**server.env(), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "wisp", "func", *args], env=env, text=True,
                            capture_output=True, timeout=120, cwd=cwd or tmp_path)
    if check and result.returncode != 0:
        raise AssertionError(f"wisp func {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}\n--- server log ---\n"
                             f"{server.log.read_text()[-3000:]}")
    return result


def ingress_get(server: WispServer, name: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.ingress_port}{path}",
                     headers={"Host": f"{name}.default.localhost"}, timeout=30)


def test_http_function_lifecycle(wisp_server: WispServer, tmp_path: Path) -> None:
    func(wisp_server, tmp_path, "create", "hello", "-t", "http")
    project = tmp_path / "hello"
    built = func(wisp_server, tmp_path, "build", "--offline", cwd=project).stdout
    digest = re.search(r"default/hello:latest@(sha256:[0-9a-f]{64})", built)
    assert digest, built
    rebuilt = func(wisp_server, tmp_path, "build", "--offline", cwd=project).stdout
    assert digest.group(1) in rebuilt  # unchanged inputs, same digest

    main = project / "main.py"
    main.write_text(main.read_text().replace(
        "def handle(request):\n", "def handle(request):\n    if request.path == '/boom':\n"
        "        raise ValueError('the function broke')\n"))
    deployed = func(wisp_server, tmp_path, "deploy", "--offline", "--path", str(project))
    assert "http://hello.default.localhost" in deployed.stdout

    assert func(wisp_server, tmp_path, "invoke", "--path", str(project)).stdout == "Hello, world!\n"
    echoed = func(wisp_server, tmp_path, "invoke", "hello", "-d", '{"x": 1}').stdout
    assert echoed.replace(" ", "") == '{"received":{"x":1}}'

    broken = ingress_get(wisp_server, "hello", "/boom")
    assert broken.status_code == 500 and "ValueError: the function broke" in broken.text
    assert ingress_get(wisp_server, "hello").text == "Hello, world!\n"  # still serving
    logs = wisp_server.cli("service", "logs", "hello").stdout
    assert "ValueError: the function broke" in logs and "Traceback" in logs
    # Instances were forked from a zygote, not started as fresh interpreters.
    assert list((wisp_server.data_dir / "logs" / "zygotes").glob("*.log"))
    assert "plain process" not in logs

    listed = func(wisp_server, tmp_path, "list").stdout
    assert "hello" in listed and "function" in listed
    described = func(wisp_server, tmp_path, "describe", "hello").stdout
    assert "wisp.local/default/hello:fn-" in described and "Runtime:   function" in described
    func(wisp_server, tmp_path, "delete", "hello")
    assert "No functions found" in func(wisp_server, tmp_path, "list").stderr


def test_cloudevents_function_and_starlette_app(wisp_server: WispServer, tmp_path: Path) -> None:
    func(wisp_server, tmp_path, "create", "events", "-t", "cloudevents")
    func(wisp_server, tmp_path, "deploy", "--offline", "--path", str(tmp_path / "events"))
    reply = func(wisp_server, tmp_path, "invoke", "--path", str(tmp_path / "events"), "-d", '{"name": "wisp"}',
                 "--type", "greeting").stdout
    assert "type: greeting.reply" in reply and "source: events" in reply
    assert '"handled":true' in reply.replace(" ", "") and '"name":"wisp"' in reply.replace(" ", "")

    web = tmp_path / "web"
    web.mkdir()
    (web / "app.py").write_text(STARLETTE_APP)
    (web / "func.yaml").write_text("name: web\nentrypoint: app:app\n")
    func(wisp_server, tmp_path, "deploy", "--offline", "--path", str(web))
    assert ingress_get(wisp_server, "web", "/some/path").json() == {"framework": "starlette",
                                                                     "path": "/some/path"}


def test_build_errors_are_reported_and_nothing_is_deployed(wisp_server: WispServer, tmp_path: Path) -> None:
    func(wisp_server, tmp_path, "create", "bad")
    (tmp_path / "bad" / "main.py").write_text("def handle(request:\n")
    result = func(wisp_server, tmp_path, "deploy", "--offline", "--path", str(tmp_path / "bad"), check=False)
    assert result.returncode != 0 and "main.py:1" in result.stderr and "syntax" in result.stderr
    assert "No functions found" in func(wisp_server, tmp_path, "list").stderr


def test_local_run_serves_and_reloads(tmp_path: Path) -> None:
    from tests.support import free_port, wait_for_port

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, "-m", "wisp", "func", "create", "loc"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "wisp", "func", "run", "--offline", "--port", str(port)],
                            cwd=tmp_path / "loc", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for_port(port, timeout=20)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, world!\n"
        main = tmp_path / "loc" / "main.py"
        main.write_text(main.read_text().replace("Hello,", "Howdy,"))
        text = ""
        for _ in range(100):
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            except httpx.HTTPError:
                text = ""
            if text.startswith("Howdy"):
                break
            import time
            time.sleep(0.1)
        assert text == "Howdy, world!\n"
        invoked = subprocess.run([sys.executable, "-m", "wisp", "func", "invoke", "--url",
                                  f"http://127.0.0.1:{port}/"], cwd=tmp_path / "loc", env=env,
                                 capture_output=True, text=True, timeout=30)
        assert invoked.stdout == "Howdy, world!\n"
    finally:
        os.killpg(proc.pid, 2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
