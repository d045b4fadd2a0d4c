"""Revision garbage collection, as Knative's config-gc (pure): which revisions may go."""

from __future__ import annotations

from typing import Any

from wisp.clock import parse_rfc3339
from wisp.config import GCConfig

Obj = dict[str, Any]
NO_GC = "serving.knative.dev/no-gc"
ROUTING_STATE = "serving.knative.dev/routingState"
ROUTING_STATE_MODIFIED = "serving.knative.dev/routingStateModified"
DISABLED = -1


def _ts(text: str | None) -> float:
    return parse_rfc3339(text) or 0.0


def last_active(rev: Obj) -> float:
    """When the revision last stopped being routed to (or was created, if it never was)."""
    meta = rev["metadata"]
    modified = (meta.get("annotations") or {}).get(ROUTING_STATE_MODIFIED)
    return _ts(modified) or _ts(meta.get("creationTimestamp"))


def _generation(rev: Obj) -> int:
    value = (rev["metadata"].get("labels") or {}).get("serving.knative.dev/configurationGeneration", "0")
    return int(value) if str(value).isdigit() else 0


def is_active(rev: Obj, latest_ready: str) -> bool:
    meta = rev["metadata"]
    return (meta["name"] == latest_ready or (meta.get("annotations") or {}).get(NO_GC) == "true"
            or (meta.get("labels") or {}).get(ROUTING_STATE, "reserve") != "reserve")


def is_stale(rev: Obj, cfg: GCConfig, now: float) -> bool:
    create_limit, active_limit = cfg.retain_since_create_time, cfg.retain_since_last_active_time
    if create_limit == DISABLED and active_limit == DISABLED:
        return False
    if create_limit != DISABLED and now - _ts(rev["metadata"].get("creationTimestamp")) <= create_limit:
        return False
    return not (active_limit != DISABLED and now - last_active(rev) <= active_limit)


def collectable(revisions: list[Obj], latest_ready: str, cfg: GCConfig, now: float) -> list[str]:
    """Names of revisions to delete: stale ones beyond the newest `min`, and any beyond `max`."""
    keep_min, keep_max = cfg.min_non_active_revisions, cfg.max_non_active_revisions
    candidates = [r for r in revisions if not is_active(r, latest_ready)]
    if len(candidates) <= keep_min:
        return []
    # Newest first; the oldest go first. Timestamps have one-second resolution, so revisions
    # retired within the same second are ordered by their configuration generation.
    candidates.sort(key=lambda r: (last_active(r), _generation(r)), reverse=True)
    remaining, doomed = len(candidates), []
    for rev in reversed(candidates[keep_min:]):
        if is_stale(rev, cfg, now) or (keep_max != DISABLED and remaining > keep_max):
            doomed.append(rev["metadata"]["name"])
            remaining -= 1
    return doomed
