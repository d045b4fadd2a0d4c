"""Functions on the autoscaler: warm zygotes, scale to zero and back, and WSGI apps by `module:app`.

One real `wisp serve` with short windows (stable 6 s, grace 1 s); functions deployed with
`wisp func deploy` run on the function runtime, forked from a zygote kept warm for the revision.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ServingServer, condition, wait_until
from wisp.runtime import reaper

pytestmark = pytest.mark.e2e
WISP_CONFIG = {"autoscaler": {"stable-window": "6s", "scale-to-zero-grace-period": "1s",
                              "allow-zero-initial-scale": True}}

FLASK_APP = '''
from flask import Flask, request

app = Flask(__name__)


@app.route("/", methods=["GET", "POST"])
def index():
    return {"framework": "flask", "method": request.method, "body": request.get_data(as_text=True)}
'''


def func(server: ServingServer, cwd: Path, *args: str) -> str:
    """`wisp func …` against the module's server (its env carries a private build cache)."""
    result = subprocess.run([sys.executable, "-m", "wisp", "func", *args], env=server.env(), text=True,
                            capture_output=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, (f"wisp func {' '.join(args)}:\n{result.stdout}\n{result.stderr}\n"
                                    f"--- server log ---\n{server.log.read_text()[-3000:]}")
    return result.stdout


def live_zygotes(server: ServingServer, record_id: str = "zygote-") -> list[int]:
    """Pids of the zygotes wisp has running (from its instance records), by record id prefix."""
    records = reaper.read_records(reaper.records_dir(server.data_dir))
    return [r.pid for r in records if r.id.startswith(record_id) and _alive(r.pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_function_scales_to_zero_and_comes_back_quickly_from_a_warm_zygote(
        serving_server: ServingServer, tmp_path: Path) -> None:
    func(serving_server, tmp_path, "create", "napper", "-t", "http")
    func(serving_server, tmp_path, "deploy", "--offline", "--path", str(tmp_path / "napper"))
    host = "napper.default.localhost"
    assert serving_server.call(host).status_code == 200

    wait_until(lambda: (rev := serving_server.obj("Revision", "napper-00001")).get("status", {}).get(
        "actualReplicas") == 0 and condition(rev, "Active").get("status") == "False",
        timeout=30, interval=0.2, what="napper at zero")
    # No instance is left, but the revision keeps its zygote warm for the next request.
    assert live_zygotes(serving_server)

    started = time.monotonic()
    resp = serving_server.call(host, timeout=10)
    took = time.monotonic() - started
    assert resp.status_code == 200 and resp.text == "Hello, world!\n"
    cold = resp.headers.get("wisp-cold-start", "")
    assert cold.endswith("ms"), resp.headers  # it did wait for an instance
    assert took < 2.0, f"scale from zero took {took:.3f}s"
    logs = serving_server.cli("service", "logs", "napper").stdout
    assert "plain process" not in logs  # forked from the zygote, not a fresh interpreter

    zygotes = live_zygotes(serving_server)
    func(serving_server, tmp_path, "delete", "napper")
    # No revision uses that dependency layer any more: its zygote is stopped, not left idle.
    wait_until(lambda: not any(_alive(pid) for pid in zygotes), timeout=15, what="the zygote stopped")


def test_a_flask_app_is_deployed_by_its_module_and_attribute(serving_server: ServingServer,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("flask", reason="Flask is not installed (it is not a wisp dependency); "
                                        "WSGI apps are also covered by the funcserver unit tests")
    web = tmp_path / "flaskweb"
    web.mkdir()
    (web / "app.py").write_text(FLASK_APP)
    (web / "func.yaml").write_text("name: flaskweb\nentrypoint: app:app\n")
    func(serving_server, tmp_path, "deploy", "--offline", "--path", str(web))
    host = "flaskweb.default.localhost"
    assert serving_server.call(host).json() == {"framework": "flask", "method": "GET", "body": ""}
    posted = serving_server.call(host, method="POST", content=b"hello wsgi")
    assert posted.json() == {"framework": "flask", "method": "POST", "body": "hello wsgi"}
    assert "plain process" not in serving_server.cli("service", "logs", "flaskweb").stdout
    func(serving_server, tmp_path, "delete", "flaskweb")


def test_a_function_revision_warms_its_zygote_before_any_instance_and_releases_it(
        serving_server: ServingServer, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def handle(request):\n    return 'warm'\n")
    annotations = {"wisp.dev/runtime": "function", "autoscaling.knative.dev/initial-scale": "0"}
    container = {"command": [sys.executable, "-m", "wisp.runtime.funcserver", "main:handle"],
                 "workingDir": str(tmp_path)}
    serving_server.apply({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                          "metadata": {"name": "warmed", "namespace": "default"},
                          "spec": {"template": {"metadata": {"annotations": annotations},
                                                "spec": {"containers": [container]}}}})
    wait_until(lambda: condition(serving_server.obj("Revision", "warmed-00001")).get("status") == "True",
               what="warmed Ready at zero")
    # Never asked for an instance, yet its zygote (no dependency layer: key "none") is up.
    assert serving_server.obj("Revision", "warmed-00001")["status"].get("actualReplicas", 0) == 0
    zygotes = wait_until(lambda: live_zygotes(serving_server, "zygote-none"), what="a warm zygote")
    assert serving_server.call("warmed.default.localhost").text == "warm"

    serving_server.cli("service", "delete", "warmed")
    wait_until(lambda: not any(_alive(pid) for pid in zygotes), timeout=15, what="the zygote stopped")
