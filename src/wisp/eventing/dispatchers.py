"""`DispatcherSet`: the running consumer loops of one kind (Triggers or Subscriptions), by key.

Both reconcilers end the same way: with a deliverable spec, keep the key's dispatcher running —
updated in place when only delivery settings changed, restarted when the stream or the consumer it
reads changed — and without one, stop it; when the object is gone, also delete its consumer so
the log can drop what it held for it. What differs (which log backs the stream, which spec fields
force a restart, whether a restart abandons the old consumer, how a start is logged) is what a
subclass says.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Generic, TypeVar

from wisp.controllers.base import Key
from wisp.eventing.dispatch import TriggerDispatcher, TriggerSpec
from wisp.eventing.log import EventLog, EventLogError

__all__ = ["DispatcherSet"]

S = TypeVar("S", bound=TriggerSpec)


class DispatcherSet(abc.ABC, Generic[S]):
    """One dispatcher per key, started, updated, restarted and stopped as reconciles decide."""

    def __init__(self) -> None:
        self.running: dict[Key, TriggerDispatcher] = {}

    # ---- what a kind supplies ------------------------------------------------------------------

    @abc.abstractmethod
    def _create(self, spec: S) -> TriggerDispatcher:
        """A new (not yet started) dispatcher for `spec`."""

    @abc.abstractmethod
    def _log_of(self, spec: TriggerSpec) -> EventLog:
        """The log holding the stream and consumer of a running dispatcher's spec."""

    @abc.abstractmethod
    def _same_run(self, old: TriggerSpec, new: S) -> bool:
        """True when the running dispatcher can take `new` in place (no restart)."""

    @abc.abstractmethod
    def _drops_consumer(self, old: TriggerSpec, new: S) -> bool:
        """On a restart: True when the old consumer is abandoned (and so deleted)."""

    def _started(self, spec: S) -> None:
        """Called after a dispatcher started (for the log line)."""

    # ---- the lifecycle ---------------------------------------------------------------------

    async def sync(self, key: Key, spec: S | None) -> bool:
        """Run the key's dispatcher with `spec`, or stop it (keeping its consumer) when None.

        True when a dispatcher now runs for the key."""
        if spec is None:
            await self.remove(key, delete_consumer=False)
            return False
        await self.ensure(key, spec)
        return True

    async def ensure(self, key: Key, spec: S) -> None:
        current = self.running.get(key)
        if current is not None and self._same_run(current.spec, spec):
            current.update(spec)
            return
        await self.remove(key, delete_consumer=current is not None and
                          self._drops_consumer(current.spec, spec))
        dispatcher = self._create(spec)
        await dispatcher.start()
        self.running[key] = dispatcher
        self._started(spec)

    async def remove(self, key: Key, *, delete_consumer: bool) -> None:
        dispatcher = self.running.pop(key, None)
        if dispatcher is None:
            return
        await dispatcher.stop()
        if delete_consumer:
            backing = self._log_of(dispatcher.spec)
            with contextlib.suppress(EventLogError):
                await backing.delete_consumer(dispatcher.spec.stream, dispatcher.spec.consumer)

    async def stop(self) -> None:
        """Stop every dispatcher; consumers stay, so a restart resumes where this one stopped."""
        for dispatcher in list(self.running.values()):
            await dispatcher.stop()
        self.running.clear()
