"""Errors raised on the data path; the proxy turns each one into a status code at the boundary."""

from __future__ import annotations


class DataplaneError(Exception):
    """Base of every data-path error; `status` is what the client sees."""

    status: int = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AcquireTimeout(DataplaneError):
    """No endpoint became ready before the deadline (request held at zero too long)."""

    status = 504

    def __init__(self, revision: str, timeout: float) -> None:
        super().__init__(f"revision {revision}: no ready instance within {timeout:g}s")
        self.revision = revision
        self.timeout = timeout


class QueueFull(DataplaneError):
    """Too many requests already wait for this revision; answer 503 rather than buffer without bound."""

    status = 503

    def __init__(self, revision: str, limit: int) -> None:
        super().__init__(f"revision {revision}: pending request queue full ({limit} waiting)")
        self.revision = revision


class RevisionGone(DataplaneError):
    """The revision was removed from the table while a request waited for it."""

    status = 503

    def __init__(self, revision: str) -> None:
        super().__init__(f"revision {revision} is no longer routable")
        self.revision = revision
