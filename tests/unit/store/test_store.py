"""The store keeps Kubernetes metadata semantics and never loses data across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wisp.api import kinds
from wisp.api.errors import AlreadyExists, Conflict, Gone, NotFound
from wisp.api.meta import owner_reference
from wisp.api.selectors import parse_selector
from wisp.store import Store

SERVICE = kinds.lookup("ksvc")
CONFIG = kinds.lookup("configurations")
REVISION = kinds.lookup("revisions")
NS = kinds.lookup("namespaces")
SECRET = kinds.lookup("secrets")


def svc(name: str = "hello", image: str = "img:1", labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": SERVICE.api_version, "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state.db")
    s.ensure_namespace("default")
    yield s
    s.close()


def test_create_assigns_metadata(store: Store) -> None:
    obj = store.create(SERVICE, svc())
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36
    assert meta["generation"] == 1
    assert meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z")
    assert store.get(SERVICE, "default", "hello") == obj


def test_duplicate_create_is_already_exists(store: Store) -> None:
    store.create(SERVICE, svc())
    with pytest.raises(AlreadyExists):
        store.create(SERVICE, svc())


def test_generation_moves_only_on_spec_change(store: Store) -> None:
    obj = store.create(SERVICE, svc())
    obj["metadata"]["labels"] = {"team": "a"}
    relabeled = store.update(SERVICE, obj)
    assert relabeled["metadata"]["generation"] == 1
    assert int(relabeled["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    relabeled["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    changed = store.update(SERVICE, relabeled)
    assert changed["metadata"]["generation"] == 2
    with_status = dict(changed, status={"observedGeneration": 2})
    after_status = store.update_status(SERVICE, with_status)
    assert after_status["metadata"]["generation"] == 2
    assert after_status["status"] == {"observedGeneration": 2}


def test_stale_update_conflicts_and_changes_nothing(store: Store) -> None:
    obj = store.create(SERVICE, svc())
    first = dict(obj, spec={"template": {"spec": {"containers": [{"image": "a"}]}}})
    store.update(SERVICE, first)
    stale = dict(obj, spec={"template": {"spec": {"containers": [{"image": "b"}]}}})
    with pytest.raises(Conflict):
        store.update(SERVICE, stale)
    assert store.get(SERVICE, "default", "hello")["spec"]["template"]["spec"]["containers"][0]["image"] == "a"


def test_update_keeps_status_and_immutable_metadata(store: Store) -> None:
    obj = store.create(SERVICE, svc())
    store.update_status(SERVICE, dict(obj, status={"url": "http://x"}))
    incoming = svc()
    incoming["metadata"]["uid"] = "forged"
    incoming["status"] = {"url": "http://forged"}
    out = store.update(SERVICE, incoming)
    assert out["metadata"]["uid"] == obj["metadata"]["uid"]
    assert out["status"] == {"url": "http://x"}


def test_generate_name(store: Store) -> None:
    obj = svc()
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "web-"
    a, b = store.create(SERVICE, obj), store.create(SERVICE, obj)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


def test_unknown_namespace_is_not_found(store: Store) -> None:
    obj = svc()
    obj["metadata"]["namespace"] = "nowhere"
    with pytest.raises(NotFound, match='namespaces "nowhere" not found'):
        store.create(SERVICE, obj)


def test_label_selector_list(store: Store) -> None:
    store.create(SERVICE, svc("a", labels={"tier": "web"}))
    store.create(SERVICE, svc("b", labels={"tier": "db"}))
    store.create(SERVICE, svc("c"))
    names = lambda sel: [o["metadata"]["name"] for o in store.list(SERVICE, "default", parse_selector(sel))]  # noqa: E731
    assert names("tier=web") == ["a"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("!tier") == ["c"]
    assert names("tier") == ["a", "b"]


def test_cascading_delete_follows_owner_references(store: Store) -> None:
    parent = store.create(SERVICE, svc())
    cfg = store.create(CONFIG, {"metadata": {"name": "hello", "namespace": "default",
                                             "ownerReferences": [owner_reference(parent)]}, "spec": {}})
    store.create(REVISION, {"metadata": {"name": "hello-00001", "namespace": "default",
                                         "ownerReferences": [owner_reference(cfg)]}, "spec": {}})
    store.create(REVISION, {"metadata": {"name": "other", "namespace": "default"}, "spec": {}})
    store.delete(SERVICE, "default", "hello")
    assert store.find(CONFIG, "default", "hello") is None
    assert store.find(REVISION, "default", "hello-00001") is None
    assert store.find(REVISION, "default", "other") is not None


def test_orphan_delete_keeps_children(store: Store) -> None:
    parent = store.create(SERVICE, svc())
    store.create(CONFIG, {"metadata": {"name": "hello", "namespace": "default",
                                       "ownerReferences": [owner_reference(parent)]}, "spec": {}})
    store.delete(SERVICE, "default", "hello", cascade=False)
    assert store.find(CONFIG, "default", "hello") is not None


def test_deleting_a_namespace_deletes_its_objects(store: Store) -> None:
    store.ensure_namespace("team")
    obj = svc()
    obj["metadata"]["namespace"] = "team"
    store.create(SERVICE, obj)
    store.delete(NS, "", "team")
    assert store.list(SERVICE, "team") == []


def test_restart_keeps_everything(tmp_path: Path) -> None:
    first = Store(tmp_path / "state.db")
    first.ensure_namespace("default")
    created = first.create(SERVICE, svc())
    rv = first.resource_version
    first.close()
    second = Store(tmp_path / "state.db")
    assert second.get(SERVICE, "default", "hello") == created
    assert second.resource_version == rv
    again = second.create(SERVICE, svc("next"))
    assert int(again["metadata"]["resourceVersion"]) == rv + 1
    second.close()


async def test_watch_resumes_from_resource_version(store: Store) -> None:
    a = store.create(SERVICE, svc("a"))
    since = int(a["metadata"]["resourceVersion"])
    store.create(SERVICE, svc("b"))
    store.delete(SERVICE, "default", "a")
    watcher = store.watch(SERVICE, "default", parse_selector(""), since)
    seen = [await asyncio.wait_for(watcher.next(), 1) for _ in range(2)]
    assert [(e.type, e.name) for e in seen if e] == [("ADDED", "b"), ("DELETED", "a")]
    store.create(SERVICE, svc("c"))
    live = await asyncio.wait_for(watcher.next(), 1)
    assert live is not None and (live.type, live.name) == ("ADDED", "c")
    store.stop_watch(watcher)


async def test_watch_without_version_lists_then_follows(store: Store) -> None:
    store.create(SERVICE, svc("a", labels={"x": "1"}))
    store.create(SERVICE, svc("b"))
    watcher = store.watch(SERVICE, "default", parse_selector("x=1"), None)
    first = await asyncio.wait_for(watcher.next(), 1)
    assert first is not None and (first.type, first.name) == ("ADDED", "a")
    store.create(SERVICE, svc("c", labels={"x": "1"}))
    store.create(SERVICE, svc("d"))
    nxt = await asyncio.wait_for(watcher.next(), 1)
    assert nxt is not None and nxt.name == "c"
    assert watcher.queue.empty()
    store.stop_watch(watcher)


def test_watch_from_a_trimmed_version_is_gone(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db", journal_size=10)
    s.ensure_namespace("default")
    for i in range(1000):
        s.create(SECRET, {"metadata": {"name": f"s{i}", "namespace": "default"}, "data": {}})
    with pytest.raises(Gone):
        s.watch(SECRET, "default", parse_selector(""), 5)
    s.close()


def test_failed_write_leaves_store_consistent(store: Store) -> None:
    store.create(SERVICE, svc())
    rv = store.resource_version
    with pytest.raises(AlreadyExists):
        store.create(SERVICE, svc())
    assert store.resource_version == rv
    assert len(store.list(SERVICE, "default")) == 1
