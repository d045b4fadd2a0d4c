"""Serving e2e: revision garbage collection keeps the latest ready revision plus the configured
number of non-active ones, and never collects a revision marked `serving.knative.dev/no-gc`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ServingServer, wait_for_value, write_app

pytestmark = pytest.mark.e2e
WISP_CONFIG = {"gc": {"min-non-active-revisions": 1, "max-non-active-revisions": 1,
                      "retain-since-create-time": "disabled", "retain-since-last-active-time": "disabled"}}
NO_GC = "serving.knative.dev/no-gc"


def revision_names(server: ServingServer, service: str) -> set[str]:
    return {r["metadata"]["name"] for r in server.objs("Revision", selector=f"serving.knative.dev/service={service}")}


def test_updates_leave_the_latest_and_one_non_active_revision(serving_server: ServingServer,
                                                              tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.cli("service", "create", "gc", "--env", "BODY=v1", "--workdir", str(app),
                       "--", sys.executable, "app.py")
    for version in (2, 3, 4):
        serving_server.cli("service", "update", "gc", "--env", f"BODY=v{version}")
    expected = {"gc-00003", "gc-00004"}
    wait_for_value(lambda: revision_names(serving_server, "gc"), expected, what="revisions left")
    assert serving_server.call("gc.default.localhost").text == "v4"


def test_no_gc_annotation_keeps_a_revision(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.cli("service", "create", "keep", "--env", "BODY=v1", "--annotation", f"{NO_GC}=true",
                       "--workdir", str(app), "--", sys.executable, "app.py")
    serving_server.cli("service", "update", "keep", "--env", "BODY=v2", "--annotation", f"{NO_GC}-")
    for version in (3, 4):
        serving_server.cli("service", "update", "keep", "--env", f"BODY=v{version}")
    expected = {"keep-00001", "keep-00003", "keep-00004"}
    wait_for_value(lambda: revision_names(serving_server, "keep"), expected, what="revisions left")
    rev = serving_server.obj("Revision", "keep-00001")
    assert rev["metadata"]["annotations"][NO_GC] == "true"
