"""Requests served in-process by wisp itself (broker ingress, …) instead of by an instance.

The handler sees a fully-read request (the body is bounded by ``RouterConfig.max_local_body``; the
proxy answers 413 past it) and returns a complete response. Keeping this a plain dataclass pair
means eventing code never touches sockets or httptools.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class LocalRequest:
    """A complete HTTP request handed to an in-process handler."""

    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: str = ""
    http_version: str = "1.1"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header, matched case-insensitively, decoded as latin-1."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default

    def header_map(self) -> dict[str, str]:
        """Headers as a lower-cased dict; repeated headers are joined with ", " (RFC 9110 §5.3)."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            k = key.decode("latin-1").lower()
            v = value.decode("latin-1")
            out[k] = f"{out[k]}, {v}" if k in out else v
        return out


@dataclass(slots=True)
class LocalResponse:
    """What an in-process handler answers; the proxy adds Content-Length and Connection."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        """Headers as bytes, minus framing headers the proxy owns."""
        return [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in self.headers
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        ]
