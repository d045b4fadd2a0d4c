"""Persistence of resources with Kubernetes metadata semantics, and watches."""

from wisp.store.store import Obj, Store
from wisp.store.watch import Watcher, WatchEvent

__all__ = ["Obj", "Store", "WatchEvent", "Watcher"]
