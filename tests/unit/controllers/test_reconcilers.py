"""Reconcilers turn Services into Configurations, Revisions and Routes exactly as Knative does."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from wisp.api import kinds
from wisp.api.meta import get_condition
from wisp.clock import SystemClock
from wisp.config import Config
from wisp.controllers.base import CONFIGURATION, REVISION, ROUTE, SERVICE, Context
from wisp.controllers.manager import ControllerManager
from wisp.controllers.revision import RuntimeReport
from wisp.controllers.urls import URLMaker
from wisp.store import Store


class FakeRuntime:
    """Stands in for the runtime: tests decide what each revision reports."""

    def __init__(self) -> None:
        self.reports: dict[str, RuntimeReport] = {}

    async def ensure(self, rev: dict[str, Any]) -> RuntimeReport | None:
        return self.reports.get(rev["metadata"]["name"])


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.store = Store(tmp / "state.db")
        self.store.ensure_namespace("default")
        self.runtime = FakeRuntime()
        self.programmed: dict[str, Any] = {}
        ctx = Context(self.store, Config(), SystemClock(), URLMaker(Config().network, 8080))
        ctx.hooks["ensure_revision"] = self.runtime.ensure
        ctx.hooks["program_route"] = self._program
        self.manager = ControllerManager(ctx)

    async def _program(self, route: dict[str, Any], targets: Any) -> None:
        self.programmed[route["metadata"]["name"]] = [(t.revision, t.percent, t.tag) for t in targets]

    async def settle(self) -> None:
        await self.manager.wait_idle()

    async def make_ready(self, rev: str, ok: bool = True, reason: str = "", message: str = "") -> None:
        self.runtime.reports[rev] = RuntimeReport(initial_scale_reached=ok, actual_replicas=1 if ok else 0,
                                                  desired_replicas=1, failure_reason=reason,
                                                  failure_message=message)
        self.manager.enqueue(REVISION, ("default", rev))
        await self.settle()

    def get(self, kind: kinds.Kind, name: str) -> dict[str, Any]:
        return self.store.get(kind, "default", name)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = kinds.by_api_version(obj["apiVersion"], obj["kind"])
        current = self.store.find(kind, "default", obj["metadata"]["name"])
        if current is None:
            return self.store.create(kind, obj)
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.store.update(kind, obj)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    harness.manager.start()
    yield harness
    await harness.manager.stop()
    harness.store.close()


def service(image: str = "img:1", *, labels: dict | None = None, annotations: dict | None = None,
            traffic: list | None = None, rev_name: str | None = None, name: str = "hello") -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {"containers": [{"image": image}]}}
    if rev_name:
        template["metadata"] = {"name": rev_name}
    spec: dict[str, Any] = {"template": template,
                            "traffic": traffic or [{"latestRevision": True, "percent": 100}]}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "annotations": annotations or {}}, "spec": spec}


def cond(obj: dict[str, Any], ctype: str = "Ready") -> tuple[str, str]:
    c = get_condition(obj, ctype) or {}
    return c.get("status", ""), c.get("reason", "")


async def test_service_makes_configuration_and_route_with_same_name_and_metadata(h: Harness) -> None:
    h.apply(service(labels={"team": "a"}, annotations={"note": "x"}))
    await h.settle()
    for kind in (CONFIGURATION, ROUTE):
        child = h.get(kind, "hello")
        assert child["metadata"]["labels"] == {"team": "a", "serving.knative.dev/service": "hello"}
        assert child["metadata"]["annotations"] == {"note": "x"}
        ref = child["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("Service", "hello", True)
    svc = h.apply(service(labels={"team": "b"}))
    await h.settle()
    cfg = h.get(CONFIGURATION, "hello")
    assert cfg["metadata"]["labels"]["team"] == "b"
    assert cfg["metadata"]["annotations"] == {}
    assert svc["metadata"]["generation"] == 1


async def test_revisions_are_numbered_by_template_changes_only(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    rev = h.get(REVISION, "hello-00001")
    labels = rev["metadata"]["labels"]
    assert labels["serving.knative.dev/configuration"] == "hello"
    assert labels["serving.knative.dev/configurationGeneration"] == "1"
    assert labels["serving.knative.dev/service"] == "hello"
    assert rev["spec"] == {"containers": [{"image": "img:1"}]}
    h.apply(service("img:1", labels={"only": "metadata"}))
    await h.settle()
    assert [r["metadata"]["name"] for r in h.store.list(REVISION, "default")] == ["hello-00001"]
    h.apply(service("img:2"))
    await h.settle()
    assert [r["metadata"]["name"] for r in h.store.list(REVISION, "default")] == ["hello-00001", "hello-00002"]
    assert h.get(CONFIGURATION, "hello")["status"]["latestCreatedRevisionName"] == "hello-00002"
    assert h.get(REVISION, "hello-00001")["spec"]["containers"][0]["image"] == "img:1"


async def test_configuration_labels_are_not_copied_to_revisions(h: Harness) -> None:
    h.apply(service(labels={"team": "a"}))
    await h.settle()
    assert "team" not in h.get(REVISION, "hello-00001")["metadata"]["labels"]


async def test_byo_revision_name(h: Harness) -> None:
    h.apply(service(rev_name="hello-blue"))
    await h.settle()
    assert h.store.find(REVISION, "default", "hello-blue") is not None


async def test_route_follows_latest_ready_revision(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    assert cond(h.get(ROUTE, "hello"), "AllTrafficAssigned") == ("Unknown", "RevisionMissing")
    assert cond(h.get(SERVICE, "hello"))[0] == "Unknown"
    await h.make_ready("hello-00001")
    route = h.get(ROUTE, "hello")
    assert route["status"]["traffic"] == [{"revisionName": "hello-00001", "latestRevision": True, "percent": 100}]
    assert route["status"]["url"] == "http://hello.default.localhost:8080"
    assert h.programmed["hello"] == [("hello-00001", 100, "")]
    svc = h.get(SERVICE, "hello")
    assert cond(svc) == ("True", "")
    assert cond(svc, "ConfigurationsReady")[0] == cond(svc, "RoutesReady")[0] == "True"
    assert svc["status"]["latestReadyRevisionName"] == "hello-00001"
    assert svc["status"]["observedGeneration"] == 1
    assert h.get(REVISION, "hello-00001")["metadata"]["labels"]["serving.knative.dev/routingState"] == "active"
    # A new revision that is not ready yet gets no traffic; the old one keeps serving.
    h.apply(service("img:2"))
    await h.settle()
    assert h.get(ROUTE, "hello")["status"]["traffic"][0]["revisionName"] == "hello-00001"
    assert cond(h.get(SERVICE, "hello"))[0] == "Unknown"
    await h.make_ready("hello-00002")
    assert h.get(ROUTE, "hello")["status"]["traffic"][0]["revisionName"] == "hello-00002"
    assert h.get(REVISION, "hello-00001")["metadata"]["labels"]["serving.knative.dev/routingState"] == "reserve"


async def test_failed_revision_fails_configuration_and_service(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    await h.make_ready("hello-00001", ok=False, reason="ExitCode1", message="Container failed with: boom")
    rev = h.get(REVISION, "hello-00001")
    assert cond(rev, "ContainerHealthy") == ("False", "ExitCode1")
    assert cond(rev) == ("False", "ExitCode1")
    cfg = h.get(CONFIGURATION, "hello")
    assert cond(cfg) == ("False", "RevisionFailed")
    assert "boom" in (get_condition(cfg, "Ready") or {})["message"]
    svc = h.get(SERVICE, "hello")
    assert cond(svc) == ("False", "RevisionFailed")
    assert cond(svc, "RoutesReady")[0] == "False"
    assert cond(h.get(ROUTE, "hello"), "AllTrafficAssigned") == ("False", "RevisionMissing")


async def test_progress_deadline_shows_on_revision(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    await h.make_ready("hello-00001", ok=False, reason="ProgressDeadlineExceeded",
                       message="Initial scale was never achieved")
    rev = h.get(REVISION, "hello-00001")
    assert cond(rev, "ResourcesAvailable") == ("False", "ProgressDeadlineExceeded")
    assert cond(rev) == ("False", "ProgressDeadlineExceeded")


async def test_traffic_split_and_tags(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    await h.make_ready("hello-00001")
    h.apply(service("img:2", traffic=[{"revisionName": "hello-00001", "percent": 50, "tag": "old"},
                                      {"latestRevision": True, "percent": 50, "tag": "new"}]))
    await h.settle()
    await h.make_ready("hello-00002")
    traffic = h.get(ROUTE, "hello")["status"]["traffic"]
    assert traffic == [
        {"revisionName": "hello-00001", "latestRevision": False, "percent": 50, "tag": "old",
         "url": "http://old-hello.default.localhost:8080"},
        {"revisionName": "hello-00002", "latestRevision": True, "percent": 50, "tag": "new",
         "url": "http://new-hello.default.localhost:8080"},
    ]
    assert h.get(SERVICE, "hello")["status"]["traffic"] == traffic


async def test_missing_revision_target(h: Harness) -> None:
    h.apply(service(traffic=[{"revisionName": "hello-09999", "percent": 100}]))
    await h.settle()
    route = h.get(ROUTE, "hello")
    assert cond(route, "AllTrafficAssigned") == ("False", "RevisionMissing")
    assert cond(route) == ("False", "RevisionMissing")
    assert "traffic" not in route["status"]


async def test_revision_of_another_service_is_not_owned(h: Harness) -> None:
    h.apply(service(name="other"))
    await h.settle()
    await h.make_ready("other-00001")
    h.apply(service(traffic=[{"revisionName": "other-00001", "percent": 100}]))
    await h.settle()
    assert cond(h.get(ROUTE, "hello"), "AllTrafficAssigned") == ("False", "RevisionNotOwned")


async def test_existing_unowned_configuration_blocks_service(h: Harness) -> None:
    h.store.create(CONFIGURATION, {"metadata": {"name": "hello", "namespace": "default"},
                                   "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
    h.apply(service())
    await h.settle()
    assert cond(h.get(SERVICE, "hello"), "ConfigurationsReady") == ("False", "NotOwned")


async def test_deleting_latest_ready_revision(h: Harness) -> None:
    h.apply(service("img:1"))
    await h.settle()
    await h.make_ready("hello-00001")
    h.apply(service("img:2"))
    await h.settle()
    h.store.delete(REVISION, "default", "hello-00001")
    await h.settle()
    assert cond(h.get(CONFIGURATION, "hello")) == ("False", "RevisionDeleted")


async def test_service_delete_cascades(h: Harness) -> None:
    h.apply(service())
    await h.settle()
    h.store.delete(SERVICE, "default", "hello")
    await h.settle()
    for kind in (CONFIGURATION, ROUTE, REVISION):
        assert h.store.list(kind, "default") == []
