"""Revision status from what the runtime reports: conditions, replicas, failure reasons.

The runtime (process, function or container backend with its supervisor) reports a neutral
`RuntimeReport`; `apply_report` turns it into Knative's Revision conditions. Keeping that mapping
pure means the reasons users see (`ExitCode<N>`, `ProgressDeadlineExceeded`, `ContainerMissing`)
are tested without starting a process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wisp.api.meta import FALSE, TRUE, UNKNOWN, ConditionSet, set_condition
from wisp.controllers.base import REVISION, Context, Key, Obj, working_copy, write_status

REVISION_CONDITIONS = ConditionSet("Ready", ["ResourcesAvailable", "ContainerHealthy"])
DEPLOYING = "Deploying"


@dataclass(frozen=True)
class RuntimeReport:
    """What the runtime knows about one revision right now."""

    initial_scale_reached: bool = False
    actual_replicas: int = 0
    desired_replicas: int = 0
    failure_reason: str = ""  # ExitCode<N> | ProgressDeadlineExceeded | ContainerMissing | ""
    failure_message: str = ""
    image_digest: str = ""
    container_name: str = "user-container"
    active: str = UNKNOWN  # Active condition: True | False (NoTraffic) | Unknown (Queued)
    active_reason: str = ""
    active_message: str = ""


ReportSource = Callable[[Obj], RuntimeReport | None]


def apply_report(rev: Obj, report: RuntimeReport, now: float) -> None:
    """Write `report` into `rev.status` (in place)."""
    status = rev.setdefault("status", {})
    reason, message = report.failure_reason, report.failure_message
    if reason.startswith("ExitCode") or reason == "ContainerMissing":
        set_condition(rev, "ContainerHealthy", FALSE, reason, message, now=now)
    elif report.initial_scale_reached:
        set_condition(rev, "ContainerHealthy", TRUE, now=now)
    else:
        set_condition(rev, "ContainerHealthy", UNKNOWN, DEPLOYING, "", now=now)
    if reason == "ProgressDeadlineExceeded":
        set_condition(rev, "ResourcesAvailable", FALSE, reason,
                      message or "Initial scale was never achieved", now=now)
    elif report.initial_scale_reached:
        set_condition(rev, "ResourcesAvailable", TRUE, now=now)
    elif reason:
        set_condition(rev, "ResourcesAvailable", FALSE, reason, message, now=now)
    else:
        set_condition(rev, "ResourcesAvailable", UNKNOWN, DEPLOYING, "", now=now)
    set_condition(rev, "Active", report.active, report.active_reason, report.active_message,
                  severity="Info", now=now)
    REVISION_CONDITIONS.recompute(rev, now)
    status["actualReplicas"] = report.actual_replicas
    status["desiredReplicas"] = report.desired_replicas
    if report.image_digest:
        status["containerStatuses"] = [{"name": report.container_name, "imageDigest": report.image_digest}]


async def reconcile_revision(ctx: Context, key: Key) -> None:
    ns, name = key
    rev = ctx.store.find(REVISION, ns, name)
    if rev is None:
        gone = ctx.hooks.get("revision_deleted")
        if gone:
            await gone(ns, name)
        return
    now = ctx.now()
    updated = working_copy(rev)
    if REVISION_CONDITIONS.initialize(updated, now):
        for ctype in ("ResourcesAvailable", "ContainerHealthy", "Ready"):
            set_condition(updated, ctype, UNKNOWN, DEPLOYING, "", now=now)
    ensure = ctx.hooks.get("ensure_revision")
    report = await ensure(rev) if ensure else None
    if report is not None:
        apply_report(updated, report, now)
    updated["status"]["observedGeneration"] = rev["metadata"].get("generation", 1)
    write_status(ctx, REVISION, rev, updated)
