"""`wisp serve` as a subprocess, driven through the CLI, raw HTTP and kubectl."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from tests.e2e.conftest import WispServer

pytestmark = pytest.mark.e2e

SVC = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: web
  labels: {team: blue}
spec:
  template:
    metadata:
      annotations: {autoscaling.knative.dev/max-scale: "3"}
    spec:
      containerConcurrency: 10
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          env: [{name: TARGET, value: one}]
          futureField: {kept: true}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
"""


def wait_for(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_apply_get_describe_delete_through_cli(wisp_server: WispServer) -> None:
    out = wisp_server.cli("apply", "-f", "-", input=SVC)
    assert "service/web created" in out.stdout and "configmap/settings created" in out.stdout
    again = wisp_server.cli("apply", "-f", "-", input=SVC)
    assert "service/web unchanged" in again.stdout
    got = json.loads(wisp_server.cli("get", "ksvc", "web", "-o", "json").stdout)
    container = got["spec"]["template"]["spec"]["containers"][0]
    assert container["futureField"] == {"kept": True}  # unknown Knative fields survive
    assert got["metadata"]["labels"] == {"team": "blue"}
    wait_for(lambda: wisp_server.cli("get", "revisions").stdout.count("web-00001"))
    wisp_server.cli("apply", "-f", "-", input=SVC.replace("value: one", "value: two"))
    revs = wait_for(lambda: "web-00002" in (o := wisp_server.cli("revision", "list").stdout) and o)
    assert "web-00001" in revs
    described = wisp_server.cli("service", "describe", "web").stdout
    assert "http://web.default.localhost:" in described and "ConfigurationsReady" in described
    wisp_server.cli("delete", "ksvc", "web")
    assert "No revisions found" in wisp_server.cli("get", "revisions").stderr


def test_service_create_flags_and_traffic(wisp_server: WispServer) -> None:
    wisp_server.cli("service", "create", "api", "--image", "img:1", "--env", "A=1", "--env-from",
                    "config-map:cfg", "--port", "h2c:9000", "--concurrency-limit", "5", "--scale-min", "1",
                    "--scale-max", "4", "--annotation", "note=x", "--label", "app=api", "--no-wait")
    svc = json.loads(wisp_server.cli("get", "ksvc", "api", "-o", "json").stdout)
    tmpl = svc["spec"]["template"]
    c = tmpl["spec"]["containers"][0]
    assert c["env"] == [{"name": "A", "value": "1"}]
    assert c["envFrom"] == [{"configMapRef": {"name": "cfg"}}]
    assert c["ports"] == [{"containerPort": 9000, "name": "h2c"}]
    assert tmpl["spec"]["containerConcurrency"] == 5
    assert tmpl["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    assert tmpl["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "4"
    assert svc["metadata"]["labels"] == {"app": "api"}
    wisp_server.cli("service", "update", "api", "--env", "A-", "--env", "B=2", "--revision-name",
                    "api-v2", "--tag", "api-v2=candidate", "--no-wait")
    svc = json.loads(wisp_server.cli("get", "ksvc", "api", "-o", "json").stdout)
    assert svc["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    assert svc["spec"]["template"]["metadata"]["name"] == "api-v2"
    tagged = [t for t in svc["spec"]["traffic"] if t.get("tag") == "candidate"]
    assert [(t["revisionName"], t["percent"]) for t in tagged] == [("api-v2", 0)]
    bad = wisp_server.cli("service", "update", "api", "--traffic", "api-v2=60", "--no-wait", check=False)
    assert bad.returncode != 0 and "Traffic targets sum to 60, want 100" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_errors_are_one_line(wisp_server: WispServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    for args in (("apply", "-f", str(tmp_path / "bad.yaml")), ("apply", "-f", str(tmp_path / "missing.yaml")),
                 ("get", "widgets"), ("get", "ksvc", "ghost"), ("service", "create", "Bad_Name", "--image", "x",
                                                               "--no-wait"),
                 ("service", "create", "x", "--image", "y", "-n", "nowhere", "--no-wait")):
        result = wisp_server.cli(*args, check=False)
        assert result.returncode != 0, args
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        assert lines and lines[0].startswith("Error:"), (args, result.stderr)
        assert "Traceback" not in result.stderr
    unreachable = subprocess.run([sys.executable, "-m", "wisp", "--api", "127.0.0.1:1", "get", "ksvc"],
                                 capture_output=True, text=True)
    assert unreachable.returncode != 0 and "cannot reach the wisp API" in unreachable.stderr


def test_namespaces_secrets_configmaps(wisp_server: WispServer) -> None:
    wisp_server.cli("namespace", "create", "team")
    assert "team" in wisp_server.cli("namespace", "list").stdout
    wisp_server.cli("secret", "create", "creds", "--from-literal", "user=me", "-n", "team")
    wisp_server.cli("configmap", "create", "conf", "--from-literal", "k=v", "-n", "team")
    secret = json.loads(wisp_server.cli("get", "secret", "creds", "-n", "team", "-o", "json").stdout)
    assert secret["data"] == {"user": "bWU="}
    wisp_server.cli("namespace", "delete", "team")
    missing = wisp_server.cli("get", "configmap", "conf", "-n", "team", check=False)
    assert missing.returncode != 0


def test_restart_keeps_state_and_resumes_reconciling(wisp_server: WispServer) -> None:
    wisp_server.cli("service", "create", "keep", "--image", "img:1", "--no-wait")
    wait_for(lambda: "keep-00001" in wisp_server.cli("get", "revisions").stdout)
    before = json.loads(wisp_server.cli("get", "ksvc", "keep", "-o", "json").stdout)
    wisp_server.stop(signal.SIGKILL)
    wisp_server.start()
    after = json.loads(wisp_server.cli("get", "ksvc", "keep", "-o", "json").stdout)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    wisp_server.cli("service", "update", "keep", "--image", "img:2", "--no-wait")
    wait_for(lambda: "keep-00002" in wisp_server.cli("get", "revisions").stdout)


def test_raw_http_watch_sees_reconciled_children(wisp_server: WispServer) -> None:
    with httpx.Client(base_url=wisp_server.api, timeout=10) as http, \
            http.stream("GET", "/apis/serving.knative.dev/v1/namespaces/default/configurations",
                        params={"watch": "true"}) as stream:
        http.post("/apis/serving.knative.dev/v1/namespaces/default/services",
                  json={"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "w"},
                        "spec": {"template": {"spec": {"containers": [{"image": "i"}]}}}})
        first = json.loads(next(stream.iter_lines()))
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "w"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_kubectl_get_apply_delete(wisp_server: WispServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(SVC)
    kubectl = ["kubectl", "--server", wisp_server.api]

    def run(*args: str) -> str:
        result = subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "service.serving.knative.dev/web created" in run("apply", "-f", str(manifest))
    manifest.write_text(SVC.replace("value: one", "value: two"))
    assert "configured" in run("apply", "-f", str(manifest))
    svc = yaml.safe_load(run("get", "ksvc", "web", "-o", "yaml"))
    assert svc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "two"
    wait_for(lambda: "web-00002" in run("get", "revisions"))
    run("delete", "-f", str(manifest))
    assert "web" not in run("get", "ksvc")


def test_serve_on_a_taken_port_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    from tests.support import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args in (("--api-addr", f"127.0.0.1:{port}", "--ingress-addr", f"127.0.0.1:{free_port()}"),
                     ("--api-addr", f"127.0.0.1:{free_port()}", "--ingress-addr", f"127.0.0.1:{port}")):
            result = subprocess.run([sys.executable, "-m", "wisp", "serve", "--data-dir", str(tmp_path), *args],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode != 0
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
            assert "Traceback" not in result.stderr


def test_bare_command_runs_where_the_user_typed_it(wisp_server: WispServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = tmp_path / "here"
    app.mkdir()
    (app / "app.py").write_text(
        "import os\nfrom http.server import BaseHTTPRequestHandler, HTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = os.getcwd().encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n")
    result = subprocess.run([sys.executable, "-m", "wisp", "service", "create", "here", "--", sys.executable,
                             "app.py"], cwd=app, env=wisp_server.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    svc = json.loads(wisp_server.cli("get", "ksvc", "here", "-o", "json").stdout)
    assert svc["spec"]["template"]["spec"]["containers"][0]["workingDir"] == str(app)
    assert wisp_server.cli("service", "invoke", "here").stdout == str(app)
