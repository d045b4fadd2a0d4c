"""The resource store: SQLite (WAL) with Kubernetes metadata semantics and resumable watches.

Every write runs in one transaction that updates the object and appends to the `events` journal,
so a watch can resume from any resourceVersion the journal still holds. Calls are synchronous:
each is a few hundred microseconds of SQLite work on the event-loop thread, cheaper than a hop
to a worker thread, and it makes read-modify-write sequences atomic with respect to other tasks.
"""

from __future__ import annotations

import builtins
import copy
import json
import secrets
import sqlite3
import string
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wisp.api import kinds
from wisp.api.errors import AlreadyExists, BadRequest, Conflict, Gone, NotFound
from wisp.api.kinds import Kind
from wisp.api.selectors import Selector
from wisp.clock import Clock, SystemClock, rfc3339
from wisp.store.watch import EventType, Hub, Listener, Watcher, WatchEvent

Obj = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE INDEX IF NOT EXISTS objects_uid ON objects(uid);
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
    owner_uid TEXT NOT NULL, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (owner_uid, kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_NON_SPEC = {"apiVersion", "kind", "metadata", "status"}
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_NAMESPACE = kinds.lookup("namespaces")


def _spec_of(obj: Obj) -> Obj:
    """Everything a user declares besides metadata: what `generation` counts changes of."""
    return {k: v for k, v in obj.items() if k not in _NON_SPEC}


def _dumps(obj: Obj) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


class Store:
    """Objects of every registered kind, keyed by (kind, namespace, name)."""

    def __init__(self, path: Path | str, *, clock: Clock | None = None, journal_size: int = 50_000) -> None:
        self.path = str(path)
        self.clock = clock or SystemClock()
        self.journal_size = journal_size
        self.hub = Hub()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self._rv = int(row[0]) if row else 0
        self._pending: list[WatchEvent] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.hub.close_all()
        self._db.close()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` synchronously after every committed change (controllers use this)."""
        self.hub.subscribe(listener)

    @property
    def resource_version(self) -> int:
        return self._rv

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rv', ?)", (str(self._rv),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
            self._rv = int(row[0]) if row else 0
            self._pending.clear()
            raise
        events, self._pending = self._pending, []
        for event in events:
            self.hub.publish(event)
        self._trim_journal()

    def _trim_journal(self) -> None:
        if self._rv % 1000 == 0:
            self._db.execute("DELETE FROM events WHERE rv <= ?", (self._rv - self.journal_size,))

    # ---- reads -----------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        row = self._db.execute(
            "SELECT body FROM objects WHERE kind=? AND namespace=? AND name=?",
            (kind.key, self._ns(kind, namespace), name),
        ).fetchone()
        if row is None:
            raise NotFound(f'{kind.plural}.{kind.group or "core"} "{name}" not found'.replace(".core", ""),
                           kind=kind.kind, name=name)
        obj: Obj = json.loads(row[0])
        return obj

    def find(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        """Like `get`, but None when absent."""
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def list(self, kind: Kind, namespace: str | None = None, selector: Selector | None = None) -> list[Obj]:
        if namespace is None or not kind.namespaced:
            rows = self._db.execute("SELECT body FROM objects WHERE kind=? ORDER BY namespace, name",
                                    (kind.key,))
        else:
            rows = self._db.execute("SELECT body FROM objects WHERE kind=? AND namespace=? ORDER BY name",
                                    (kind.key, namespace))
        out = [json.loads(r[0]) for r in rows]
        if selector is not None and selector.requirements:
            out = [o for o in out if selector.matches(o.get("metadata", {}).get("labels"))]
        return out

    def list_owned(self, kind: Kind, uid: str) -> builtins.list[Obj]:
        """Objects of `kind` naming `uid` in their ownerReferences (indexed, unlike a label scan)."""
        rows = self._db.execute(
            "SELECT o.body FROM owners w JOIN objects o ON o.kind = w.kind AND o.namespace = w.namespace "
            "AND o.name = w.name WHERE w.owner_uid = ? AND w.kind = ? ORDER BY o.name", (uid, kind.key))
        return [json.loads(r[0]) for r in rows]

    def owned_by(self, uid: str) -> builtins.list[tuple[Kind, str, str]]:
        """(kind, namespace, name) of every object naming `uid` in its ownerReferences."""
        rows = self._db.execute("SELECT kind, namespace, name FROM owners WHERE owner_uid=?", (uid,))
        by_key = {k.key: k for k in kinds.ALL}
        return [(by_key[k], ns, n) for k, ns, n in rows if k in by_key]

    # ---- writes ----------------------------------------------------------------------------

    def create(self, kind: Kind, obj: Obj) -> Obj:
        """Store a new object: assigns uid, resourceVersion, generation, creationTimestamp, name."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = self._ns(kind, meta.get("namespace", ""))
        if kind.namespaced:
            meta["namespace"] = namespace
            self._require_namespace(namespace)
        else:
            meta.pop("namespace", None)
        with self._tx():
            if not meta.get("name"):
                meta["name"] = self._generate_name(kind, namespace, meta.get("generateName", ""))
            if self._exists(kind, namespace, meta["name"]):
                raise AlreadyExists(f'{kind.plural} "{meta["name"]}" already exists',
                                    kind=kind.kind, name=meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["generation"] = 1
            meta["creationTimestamp"] = rfc3339(self.clock.now())
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            self._write(kind, namespace, obj, "ADDED", insert=True)
        return obj

    def update(self, kind: Kind, obj: Obj) -> Obj:
        """Replace spec and metadata (PUT); status is kept. A stale resourceVersion is a 409."""
        return self._replace(kind, obj, status_only=False)

    def update_status(self, kind: Kind, obj: Obj) -> Obj:
        """Replace only the status (the /status subresource); a no-op write is skipped."""
        return self._replace(kind, obj, status_only=True)

    def _replace(self, kind: Kind, obj: Obj, *, status_only: bool) -> Obj:
        meta = obj.get("metadata") or {}
        namespace, name = self._ns(kind, meta.get("namespace", "")), meta.get("name", "")
        if not name:
            raise BadRequest("metadata.name is required")
        with self._tx():
            current = self.get(kind, namespace, name)
            cur_meta = current["metadata"]
            wanted_rv = meta.get("resourceVersion")
            if wanted_rv not in (None, "") and str(wanted_rv) != cur_meta["resourceVersion"]:
                raise Conflict(
                    f'Operation cannot be fulfilled on {kind.plural} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    kind=kind.kind, name=name)
            new = self._merge(kind, current, obj, status_only=status_only)
            if new == current:
                return current
            self._write(kind, namespace, new, "MODIFIED", insert=False)
        return new

    def _merge(self, kind: Kind, current: Obj, incoming: Obj, *, status_only: bool) -> Obj:
        if status_only:
            new = copy.deepcopy(current)
            if "status" in incoming:
                new["status"] = copy.deepcopy(incoming["status"])
            return new
        new = copy.deepcopy(incoming)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        if kind.has_status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        meta, cur_meta = new.setdefault("metadata", {}), current["metadata"]
        for key in ("uid", "creationTimestamp", "generation", "resourceVersion", "namespace"):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("generateName", None)
        if "generateName" in cur_meta:
            meta["generateName"] = cur_meta["generateName"]
        if _spec_of(new) != _spec_of(current):
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        return new

    def delete(self, kind: Kind, namespace: str, name: str, *, cascade: bool = True) -> Obj:
        """Delete an object and (cascade) everything it owns, transitively; returns the object."""
        namespace = self._ns(kind, namespace)
        with self._tx():
            obj = self.get(kind, namespace, name)
            self._delete_tree(kind, namespace, obj, cascade)
        return obj

    def _delete_tree(self, kind: Kind, namespace: str, obj: Obj, cascade: bool) -> None:
        uid = obj["metadata"]["uid"]
        if cascade:
            for child_kind, child_ns, child_name in self.owned_by(uid):
                child = self.find(child_kind, child_ns, child_name)
                if child is not None:
                    self._delete_tree(child_kind, child_ns, child, cascade)
            if kind == _NAMESPACE:
                for k in kinds.ALL:
                    if k.namespaced:
                        for child in self.list(k, obj["metadata"]["name"]):
                            self._delete_tree(k, obj["metadata"]["name"], child, cascade)
        name = obj["metadata"]["name"]
        self._db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                         (kind.key, namespace, name))
        self._db.execute("DELETE FROM owners WHERE kind=? AND namespace=? AND name=?",
                         (kind.key, namespace, name))
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._journal(kind, namespace, name, "DELETED", obj)

    # ---- watch -----------------------------------------------------------------------------

    def watch(self, kind: Kind, namespace: str | None, selector: Selector,
              since: int | None) -> Watcher:
        """A watcher primed with what happened after `since` (or with every current object)."""
        watcher = Watcher(kind.key, namespace if kind.namespaced else None, selector)
        if since:
            oldest = self._db.execute("SELECT MIN(rv) FROM events").fetchone()[0]
            if since < self._rv and (oldest is None or since < oldest - 1):
                raise Gone(f"too old resource version: {since} ({oldest})")
            rows = self._db.execute(
                "SELECT rv, kind, namespace, name, type, body FROM events WHERE rv > ? AND kind=? ORDER BY rv",
                (since, kind.key))
            for rv, k, ns, n, etype, body in rows:
                watcher.offer(WatchEvent(etype, k, ns, n, rv, json.loads(body)))
        else:
            for obj in self.list(kind, namespace, selector):
                m = obj["metadata"]
                watcher.offer(WatchEvent("ADDED", kind.key, m.get("namespace", ""), m["name"],
                                         int(m["resourceVersion"]), obj))
        self.hub.add_watcher(watcher)
        return watcher

    def stop_watch(self, watcher: Watcher) -> None:
        self.hub.remove_watcher(watcher)

    # ---- internals -------------------------------------------------------------------------

    def _write(self, kind: Kind, namespace: str, obj: Obj, etype: EventType, *, insert: bool) -> None:
        self._rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._rv)
        body = _dumps(obj)
        name = meta["name"]
        if insert:
            self._db.execute("INSERT INTO objects(kind, namespace, name, uid, rv, body) VALUES (?,?,?,?,?,?)",
                             (kind.key, namespace, name, meta["uid"], self._rv, body))
        else:
            self._db.execute("UPDATE objects SET rv=?, body=? WHERE kind=? AND namespace=? AND name=?",
                             (self._rv, body, kind.key, namespace, name))
        self._db.execute("DELETE FROM owners WHERE kind=? AND namespace=? AND name=?",
                         (kind.key, namespace, name))
        for ref in meta.get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid"):
                self._db.execute("INSERT OR IGNORE INTO owners VALUES (?,?,?,?)",
                                 (ref["uid"], kind.key, namespace, name))
        self._journal(kind, namespace, name, etype, obj, body)

    def _journal(self, kind: Kind, namespace: str, name: str, etype: EventType, obj: Obj,
                 body: str | None = None) -> None:
        self._db.execute("INSERT INTO events(rv, kind, namespace, name, type, body) VALUES (?,?,?,?,?,?)",
                         (self._rv, kind.key, namespace, name, etype, body or _dumps(obj)))
        self._pending.append(WatchEvent(etype, kind.key, namespace, name, self._rv, copy.deepcopy(obj)))

    def _exists(self, kind: Kind, namespace: str, name: str) -> bool:
        row = self._db.execute("SELECT 1 FROM objects WHERE kind=? AND namespace=? AND name=?",
                               (kind.key, namespace, name)).fetchone()
        return row is not None

    def _generate_name(self, kind: Kind, namespace: str, prefix: str) -> str:
        if not prefix:
            raise BadRequest("metadata.name or metadata.generateName is required")
        for _ in range(20):
            name = prefix + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
            if not self._exists(kind, namespace, name):
                return name
        raise AlreadyExists(f"could not generate a unique name from {prefix!r}")

    def _require_namespace(self, namespace: str) -> None:
        if not self._exists(_NAMESPACE, "", namespace):
            raise NotFound(f'namespaces "{namespace}" not found', kind="Namespace", name=namespace)

    @staticmethod
    def _ns(kind: Kind, namespace: str | None) -> str:
        if not kind.namespaced:
            return ""
        return namespace or "default"

    def ensure_namespace(self, name: str) -> None:
        """Create a namespace unless it exists (used for `default` at start-up)."""
        if not self._exists(_NAMESPACE, "", name):
            self.create(_NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
