"""Instance records and stale-instance cleanup, with real (harmless) sleeping processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from wisp.runtime import reaper
from wisp.runtime.reaper import InstanceRecord


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)


def record_for(p: subprocess.Popen[bytes], **over: int) -> InstanceRecord:
    start = reaper.proc_start_time(p.pid)
    assert start is not None
    fields = dict(id=f"r-{p.pid}", pid=p.pid, pgid=p.pid, start_time=start, namespace="ns",
                  revision="r", owner_pid=1)
    fields.update(over)
    return InstanceRecord(**fields)  # type: ignore[arg-type]


def test_records_round_trip_and_torn_files_are_dropped(tmp_path: Path) -> None:
    rec = InstanceRecord("a", 10, 10, 123, "ns", "rev", 1)
    reaper.write_record(tmp_path, rec)
    (tmp_path / "torn.json").write_text("{")
    assert reaper.read_records(tmp_path) == [rec]
    assert not (tmp_path / "torn.json").exists()
    reaper.remove_record(tmp_path, "a")
    reaper.remove_record(tmp_path, "a")  # idempotent
    assert reaper.read_records(tmp_path) == []
    assert reaper.read_records(tmp_path / "missing") == []


def test_proc_stat_reads_this_process() -> None:
    stat = reaper.proc_stat(os.getpid())
    assert stat is not None and stat[1] == os.getpgid(0) and stat[2] == os.getsid(0)
    assert reaper.proc_stat(2**22 + 1) is None


def test_cleanup_kills_a_recorded_live_instance(tmp_path: Path) -> None:
    p = sleeper()
    reaper.write_record(tmp_path, record_for(p))
    assert reaper.cleanup_stale(tmp_path) == 1
    assert p.wait(timeout=5) == -9
    assert reaper.read_records(tmp_path) == []


def test_cleanup_spares_a_recycled_pid(tmp_path: Path) -> None:
    p = sleeper()
    try:
        start = reaper.proc_start_time(p.pid)
        assert start is not None
        reaper.write_record(tmp_path, record_for(p, start_time=start - 1))  # "an older process"
        assert reaper.cleanup_stale(tmp_path) == 0
        time.sleep(0.05)
        assert p.poll() is None
        assert reaper.read_records(tmp_path) == []
    finally:
        p.kill()
        p.wait()


def test_cleanup_keeps_records_it_is_told_to_keep(tmp_path: Path) -> None:
    p = sleeper()
    try:
        rec = record_for(p)
        reaper.write_record(tmp_path, rec)
        assert reaper.cleanup_stale(tmp_path, keep={rec.id}) == 0
        assert p.poll() is None and reaper.read_records(tmp_path) == [rec]
    finally:
        p.kill()
        p.wait()


def test_orphans_of_a_dead_leader_are_found_by_session(tmp_path: Path) -> None:
    # The leader starts a child in its session, prints its pid and exits: the child is an orphan.
    code = ("import subprocess, sys;"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']);"
            "print(c.pid, flush=True)")
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    start = reaper.proc_start_time(leader.pid)
    assert leader.stdout is not None and start is not None
    orphan = int(leader.stdout.readline())
    leader.wait()
    rec = InstanceRecord("x", leader.pid, leader.pid, start, "ns", "r", 1)
    reaper.write_record(tmp_path, rec)
    assert reaper.cleanup_stale(tmp_path) == 1
    deadline = time.monotonic() + 3
    while reaper.proc_stat(orphan) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert reaper.proc_stat(orphan) is None
