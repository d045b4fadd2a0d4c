"""Serving e2e: apps that crash, never get ready, cannot start, or fight over a port; bad `--source`.

Every failure must end in a clear reason on Revision, Configuration and Service, a readable CLI
error with a non-zero exit code, and no half-created state.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServingServer, condition, wait_until, write_app

pytestmark = pytest.mark.e2e
PY = sys.executable
WISP_CONFIG = {"deployment": {"progress-deadline": "3s"}}

CRASHING = "print('boom: DATABASE_URL is not set', flush=True); import sys; sys.exit(3)"
WRONG_PORT = r'''
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))  # anywhere but $PORT
s.listen()
print("listening on", s.getsockname()[1], flush=True)
time.sleep(3600)
'''
FIXED_PORT = r'''
import http.server, sys
port = int(sys.argv[1])  # ignores $PORT
print("binding", port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler).serve_forever()
'''


def failed(server: ServingServer, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Service, Configuration and latest Revision once the Service's Ready condition is False."""
    wait_until(lambda: condition(server.obj("Service", name)).get("status") == "False", timeout=20,
               what=f"service {name} to fail")
    svc = server.obj("Service", name)
    rev_name = svc["status"]["latestCreatedRevisionName"]
    return svc, server.obj("Configuration", name), server.obj("Revision", rev_name)


def assert_explained(*objs: dict[str, Any]) -> None:
    for obj in objs:
        ready = condition(obj)
        assert ready["status"] == "False", obj["kind"]
        assert ready.get("reason") and ready.get("message"), (obj["kind"], ready)


def test_crashing_app_reports_its_exit_code_and_output(serving_server: ServingServer) -> None:
    out = serving_server.cli("service", "create", "crash", "--", PY, "-c", CRASHING, check=False)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "'crash' is not ready" in out.stderr and "boom: DATABASE_URL is not set" in out.stderr, out.stderr
    svc, cfg, rev = failed(serving_server, "crash")
    health = condition(rev, "ContainerHealthy")
    assert (health["status"], health["reason"]) == ("False", "ExitCode3")
    assert "boom: DATABASE_URL is not set" in health["message"]
    assert_explained(svc, cfg, rev)
    assert "boom: DATABASE_URL is not set" in condition(svc)["message"]


def test_never_ready_app_hits_the_progress_deadline(serving_server: ServingServer, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(WRONG_PORT)
    out = serving_server.cli("service", "create", "deaf", "--workdir", str(tmp_path), "--", PY, "app.py",
                             check=False)
    assert out.returncode != 0
    assert "'deaf' is not ready" in out.stderr and "never achieved" in out.stderr, out.stderr
    svc, cfg, rev = failed(serving_server, "deaf")
    assert condition(rev)["reason"] == "ProgressDeadlineExceeded"
    assert_explained(svc, cfg, rev)
    # The revision gave up: nothing keeps running.
    wait_until(lambda: serving_server.obj("Revision", "deaf-00001")["status"].get("actualReplicas", 0) == 0,
               what="deaf-00001 scaled to zero")


def test_missing_command_fails_with_exit_code_127(serving_server: ServingServer) -> None:
    out = serving_server.cli("service", "create", "nocmd", "--", "wisp-no-such-command", "--flag",
                             check=False)
    assert out.returncode != 0
    svc, cfg, rev = failed(serving_server, "nocmd")
    health = condition(rev, "ContainerHealthy")
    assert health["reason"] == "ExitCode127"
    assert "wisp-no-such-command" in health["message"]
    assert "not found" in health["message"].lower()
    assert_explained(svc, cfg, rev)


def test_app_binding_a_taken_port_fails_clearly(serving_server: ServingServer, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(FIXED_PORT)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = serving_server.cli("service", "create", "clash", "--workdir", str(tmp_path), "--", PY,
                                 "app.py", str(port), check=False)
        assert out.returncode != 0
        svc, cfg, rev = failed(serving_server, "clash")
    health = condition(rev, "ContainerHealthy")
    assert health["reason"] == "ExitCode1"
    assert "Address already in use" in health["message"]
    assert_explained(svc, cfg, rev)


def _unreadable(tmp_path: Path) -> Path:
    folder = write_app(tmp_path / "locked")
    folder.chmod(0)
    return folder


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("file", "is a file"),
    ("unreadable", "cannot read"),
    ("too-large", "over the limit"),
])
def test_bad_source_is_refused_before_anything_is_created(serving_server: ServingServer, tmp_path: Path,
                                                          case: str, expected: str) -> None:
    env = {}
    if case == "missing":
        source = tmp_path / "nowhere"
    elif case == "file":
        source = write_app(tmp_path / "app") / "app.py"
    elif case == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads folders whatever their mode")
        source = _unreadable(tmp_path)
    else:
        source = write_app(tmp_path / "big")
        (source / "data.bin").write_bytes(b"x" * 4096)
        env = {"WISP_MAX_SOURCE_BYTES": "2048"}
    name = f"bad-{case}"
    result = serving_server.cli_env(env, "service", "create", name, "--source", str(source), "--",
                                    PY, "app.py")
    try:
        assert result.returncode != 0
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 3
        assert serving_server.obj("Service", name) == {}
        assert serving_server.objs("Revision", selector=f"serving.knative.dev/service={name}") == []
    finally:
        if case == "unreadable":
            source.chmod(0o755)


def test_working_source_after_a_refused_one(serving_server: ServingServer, tmp_path: Path) -> None:
    """A refused `--source` leaves nothing behind: the same name can be created right after."""
    source = write_app(tmp_path / "big", body="small enough")
    (source / "data.bin").write_bytes(b"x" * 4096)
    refused = serving_server.cli_env({"WISP_MAX_SOURCE_BYTES": "1024"}, "service", "create", "retry",
                                     "--source", str(source), "--", PY, "app.py")
    assert refused.returncode != 0
    (source / "data.bin").unlink()
    serving_server.cli("service", "create", "retry", "--source", str(source), "--", PY, "app.py")
    assert serving_server.call("retry.default.localhost").text == "small enough"


def test_refused_source_on_update_keeps_the_running_revision(serving_server: ServingServer,
                                                             tmp_path: Path) -> None:
    source = write_app(tmp_path / "src", body="first")
    serving_server.cli("service", "create", "steady", "--source", str(source), "--", PY, "app.py")
    generation = serving_server.obj("Service", "steady")["metadata"]["generation"]
    for extra_env, folder, expected in (({}, tmp_path / "gone", "does not exist"),
                                        ({"WISP_MAX_SOURCE_BYTES": "10"}, source, "over the limit"),
                                        ({"WISP_MAX_SOURCE_BYTES": "lots"}, source, "WISP_MAX_SOURCE_BYTES")):
        out = serving_server.cli_env(extra_env, "service", "update", "steady", "--source", str(folder),
                                     "--", PY, "app.py")
        assert out.returncode != 0 and expected in out.stderr, out.stderr
    assert serving_server.obj("Service", "steady")["metadata"]["generation"] == generation
    assert len(serving_server.objs("Revision", selector="serving.knative.dev/service=steady")) == 1
    assert serving_server.call("steady.default.localhost").text == "first"


def test_failed_update_leaves_the_old_revision_serving(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", body="old and good")
    serving_server.cli("service", "create", "canary", "--workdir", str(app), "--", PY, "app.py")
    out = serving_server.cli("service", "update", "canary", "--", PY, "-c", CRASHING, check=False)
    assert out.returncode != 0 and "boom: DATABASE_URL is not set" in out.stderr, out.stderr
    svc = serving_server.obj("Service", "canary")
    assert svc["status"]["latestCreatedRevisionName"] == "canary-00002"
    assert svc["status"]["latestReadyRevisionName"] == "canary-00001"
    assert [t["revisionName"] for t in svc["status"]["traffic"]] == ["canary-00001"]
    assert {serving_server.call("canary.default.localhost").text for _ in range(20)} == {"old and good"}
