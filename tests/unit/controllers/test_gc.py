"""Revision GC keeps what config-gc says to keep, and nothing active ever goes."""

from __future__ import annotations

from wisp.clock import rfc3339
from wisp.config import Config
from wisp.controllers.gc import collectable

NOW = 1_800_000_000.0
HOUR = 3600.0


def rev(name: str, created_h_ago: float, state: str = "reserve", inactive_h_ago: float | None = None,
        no_gc: bool = False) -> dict:
    annotations = {}
    if inactive_h_ago is not None:
        annotations["serving.knative.dev/routingStateModified"] = rfc3339(NOW - inactive_h_ago * HOUR)
    if no_gc:
        annotations["serving.knative.dev/no-gc"] = "true"
    return {"metadata": {"name": name, "creationTimestamp": rfc3339(NOW - created_h_ago * HOUR),
                         "labels": {"serving.knative.dev/routingState": state}, "annotations": annotations}}


def gc(**overrides: object) -> Config:
    return Config().with_overrides(gc=overrides)  # type: ignore[arg-type]


def test_defaults_keep_twenty_non_active() -> None:
    revisions = [rev(f"r{i}", created_h_ago=100 + i, inactive_h_ago=50 + i) for i in range(25)]
    doomed = collectable(revisions, "latest", gc().gc, NOW)
    assert len(doomed) == 5
    assert set(doomed) == {f"r{i}" for i in range(20, 25)}  # the oldest last-active go first


def test_recent_revisions_are_not_stale() -> None:
    revisions = [rev(f"r{i}", created_h_ago=1, inactive_h_ago=1) for i in range(25)]
    assert collectable(revisions, "latest", gc().gc, NOW) == []


def test_active_latest_ready_and_no_gc_are_kept() -> None:
    cfg = gc(**{"min-non-active-revisions": 0, "retain-since-create-time": "disabled",
                "retain-since-last-active-time": "disabled", "max-non-active-revisions": 0}).gc
    revisions = [rev("routed", 100, state="active"), rev("ready", 100), rev("pinned", 100, no_gc=True),
                 rev("old", 100)]
    assert collectable(revisions, "ready", cfg, NOW) == ["old"]


def test_max_non_active_caps_the_count() -> None:
    cfg = gc(**{"min-non-active-revisions": 1, "max-non-active-revisions": 2,
                "retain-since-create-time": "disabled", "retain-since-last-active-time": "disabled"}).gc
    revisions = [rev(f"r{i}", created_h_ago=1, inactive_h_ago=i) for i in range(5)]
    assert sorted(collectable(revisions, "x", cfg, NOW)) == ["r2", "r3", "r4"]  # two remain


def test_everything_disabled_collects_nothing() -> None:
    cfg = gc(**{"min-non-active-revisions": 0, "max-non-active-revisions": "disabled",
                "retain-since-create-time": "disabled", "retain-since-last-active-time": "disabled"}).gc
    assert collectable([rev("a", 1000, inactive_h_ago=1000)], "x", cfg, NOW) == []
