"""Watch streams: in-process fan-out of store changes to API clients and controllers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from wisp.api.selectors import Selector

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class WatchEvent:
    """One change, in the shape `?watch=true` streams it."""

    type: EventType
    kind: str  # Kind.key
    namespace: str
    name: str
    resource_version: int
    object: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"type": self.type, "object": self.object}


Listener = Callable[[WatchEvent], None]


class Watcher:
    """A bounded queue of events for one watch; overflowing closes it so the client re-lists."""

    def __init__(self, kind: str, namespace: str | None, selector: Selector, maxsize: int = 10_000) -> None:
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(maxsize)
        self.closed = False

    def wants(self, event: WatchEvent) -> bool:
        if event.kind != self.kind:
            return False
        if self.namespace is not None and event.namespace != self.namespace:
            return False
        return self.selector.matches(event.object.get("metadata", {}).get("labels"))

    def offer(self, event: WatchEvent) -> None:
        if self.closed or not self.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:  # make room for the end marker
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def next(self) -> WatchEvent | None:
        """The next event, or None once the watch is closed."""
        return await self.queue.get()


class Hub:
    """Synchronous fan-out: listeners (controllers) are called inline, watchers get queued copies."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._watchers: set[Watcher] = set()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_watcher(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        watcher.close()

    def publish(self, event: WatchEvent) -> None:
        for listener in self._listeners:
            listener(event)
        for watcher in list(self._watchers):
            watcher.offer(event)
            if watcher.closed:
                self._watchers.discard(watcher)

    def close_all(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()
        self._watchers.clear()
