"""Durable event logs behind one small port; backends are chosen by name and imported lazily.

`open_backend("sqlite", path=…)` returns an *unopened* log: call `await log.open()` (or use
`async with`) before use. Optional backends (nats, rabbitmq, redis) are imported only when asked
for, so their client libraries stay optional dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

from wisp.eventing.log.base import (
    DEFAULT_LEASE,
    Capabilities,
    ConsumerNotFound,
    EventLog,
    EventLogError,
    InvalidOffset,
    LogClosedError,
    Record,
    RecordTooLarge,
    Start,
    TemporaryLogError,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_LEASE",
    "Capabilities",
    "ConsumerNotFound",
    "EventLog",
    "EventLogError",
    "InvalidOffset",
    "LogClosedError",
    "Record",
    "RecordTooLarge",
    "Start",
    "TemporaryLogError",
    "open_backend",
]

BACKENDS: dict[str, str] = {
    "sqlite": "wisp.eventing.log.sqlite:SqliteEventLog",
    "memory": "wisp.eventing.log.memory:MemoryEventLog",
    "nats": "wisp.eventing.log.nats:NatsEventLog",
    "rabbitmq": "wisp.eventing.log.rabbitmq:RabbitMQEventLog",
    "redis": "wisp.eventing.log.redis:RedisEventLog",
}
"""Backend name (the `eventing.backend` config value) → `module:Class`."""


def open_backend(name: str, **kwargs: Any) -> EventLog:
    """Construct the backend called `name` with `kwargs` (e.g. `path=`, `clock=`); not yet opened."""
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"unknown event log backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EventLogError(
            f"event log backend {name!r} is not available ({exc.name} is not installed)") from exc
    log: EventLog = getattr(module, cls_name)(**kwargs)
    return log
