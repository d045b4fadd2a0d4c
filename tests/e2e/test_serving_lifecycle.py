"""Serving e2e: `wisp serve` killed with SIGKILL leaves no process behind, and a restart serves again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServingServer, wait_until, write_app
from wisp.runtime.guardian import GroupGuardian

pytestmark = pytest.mark.e2e
HOST = "durable.default.localhost"


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_sigkilled_server_leaves_no_orphans_and_restart_serves_again(
        make_serving_server: Callable[..., ServingServer], tmp_path: Path) -> None:
    server: ServingServer = make_serving_server(base=tmp_path / "wisp")
    src = write_app(tmp_path / "src", body="still here")
    server.cli("service", "create", "durable", "--env", "SPAWN_CHILD=1", "--source", str(src),
               "--", sys.executable, "app.py")
    pids = server.call(HOST, "/pid").json()
    assert alive(pids["pid"]) and alive(pids["child"])
    assert pids["pgid"] == pids["pid"]  # each instance leads its own group

    server.stop(signal.SIGKILL)
    wait_until(lambda: not alive(pids["pid"]), timeout=5, what="the app to die with wisp")
    wait_until(lambda: not group_members(pids["pgid"]), timeout=5,
               what=f"the app's process group {pids['pgid']} to be empty")

    restarted: ServingServer = make_serving_server(base=tmp_path / "wisp")
    wait_until(lambda: restarted.call(HOST).status_code == 200, timeout=20, what="the service to come back")
    assert restarted.call(HOST).text == "still here"
    again = restarted.call(HOST, "/pid").json()
    assert again["pid"] != pids["pid"]


def test_guardian_kills_registered_groups_when_its_owner_goes(tmp_path: Path) -> None:
    """The watchdog behind the SIGKILL test: EOF on its pipe kills the groups still registered."""
    guarded = subprocess.Popen(["sleep", "60"], start_new_session=True)
    forgotten = subprocess.Popen(["sleep", "60"], start_new_session=True)
    guardian = GroupGuardian()
    try:
        guardian.watch(guarded.pid)
        guardian.watch(forgotten.pid)
        guardian.forget(forgotten.pid)
        guardian.close()  # what the kernel does to the pipe when wisp dies
        assert guarded.wait(5) == -signal.SIGKILL
        assert forgotten.poll() is None
    finally:
        for proc in (guarded, forgotten):
            proc.kill()
            proc.wait()
