"""Instance records on disk and the cleanup of instances a crashed wisp left behind.

Each running process instance has `<data_dir>/run/instances/<id>.json` holding its pid, its
process group and its kernel start time. After a crash (wisp SIGKILLed, OOM…) the next wisp reads
these records and kills what is left. The start time guards against killing an unrelated process
that happens to have been given a recycled pid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("wisp.runtime.reaper")


@dataclass(frozen=True)
class InstanceRecord:
    """What a backend writes when an instance starts and removes when it is gone."""

    id: str
    pid: int
    pgid: int
    start_time: int  # field 22 of /proc/<pid>/stat, in clock ticks since boot
    namespace: str
    revision: str
    owner_pid: int  # the wisp process that started it


def records_dir(data_dir: Path) -> Path:
    return data_dir / "run" / "instances"


def write_record(directory: Path, record: InstanceRecord) -> None:
    """Atomically (rename) write one record so a crash never leaves half a file."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{record.id}.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, directory / f"{record.id}.json")


def remove_record(directory: Path, instance_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / f"{instance_id}.json").unlink()


def read_records(directory: Path) -> list[InstanceRecord]:
    """Every readable record; unreadable ones are deleted (they can only be a torn write)."""
    records = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            records.append(InstanceRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            log.warning("removing unreadable instance record %s", path)
            path.unlink(missing_ok=True)
    return records


def proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(start time, process group, session) of a live pid from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    fields = raw[raw.rindex(b")") + 2:].split()
    state = fields[0]
    if state in (b"Z", b"X"):
        return None  # a zombie is already dead; only its parent can reap it
    return int(fields[19]), int(fields[2]), int(fields[3])


def proc_start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[0] if stat else None


def session_members(sid: int, not_before: int) -> list[int]:
    """Live pids in session `sid` that started no earlier than `not_before` (clock ticks)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat and stat[2] == sid and stat[0] >= not_before:
            members.append(int(entry.name))
    return members


def kill_leftovers(record: InstanceRecord) -> bool:
    """SIGKILL what remains of one recorded instance; True if anything was still running.

    If the leader lives with the recorded start time, its whole group goes. If the leader is gone
    (e.g. it died with wisp through PR_SET_PDEATHSIG) its grandchildren may remain in its session:
    Linux does not reuse a pid while it still names a live session, so members of session `pgid`
    that started after the leader are the instance's own descendants.
    """
    leader = proc_stat(record.pid)
    if leader is not None:
        if leader[0] != record.start_time:
            return False  # the pid was recycled by an unrelated process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pgid, signal.SIGKILL)
        return True
    members = session_members(record.pgid, record.start_time)
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return bool(members)


def cleanup_stale(directory: Path, keep: Collection[str] = ()) -> int:
    """Kill the leftovers of every record not in `keep` and delete those records; return the kill count."""
    killed = 0
    for record in read_records(directory):
        if record.id in keep:
            continue
        if kill_leftovers(record):
            log.info("killed stale instance %s/%s/%s (pid %d)", record.namespace, record.revision,
                     record.id, record.pid)
            killed += 1
        remove_record(directory, record.id)
    return killed
