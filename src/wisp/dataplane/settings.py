"""Tunables of the ingress router, with every default in one place."""

from __future__ import annotations

from dataclasses import dataclass

from wisp.config import Config


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """How the ingress proxy behaves; built from the global ``Config`` by ``from_config``."""

    # config-features tag-header-based-routing: honour `Knative-Serving-Tag: <tag>` on the main host.
    tag_header_routing: bool = False
    # Largest request body an in-process (local) handler may receive; larger gets 413.
    max_local_body: int = 10 * 1024 * 1024
    # Deadline for in-process handlers (they have no revision timeout).
    local_timeout: float = 60.0
    # Request line + headers larger than this get 431 (slowloris / memory guard).
    max_header_bytes: int = 64 * 1024
    # Write-buffer high-water mark per socket; above it the other side stops being read.
    high_water: int = 256 * 1024
    # Request body bytes buffered while no upstream connection is attached yet (held at zero).
    max_pending_body: int = 256 * 1024
    # Body bytes remembered so a request can be replayed on a fresh connection after a stale one.
    replay_limit: int = 64 * 1024
    # Request body bytes read and dropped after an early response before closing instead.
    max_discard: int = 4 * 1024 * 1024
    # Dialling an instance.
    connect_timeout: float = 5.0
    # Idle client keep-alive connections are closed after this long.
    keepalive_timeout: float = 75.0
    # Idle connections kept per instance.
    max_idle_per_endpoint: int = 256
    # Connection attempts in progress per instance; more requests wait in the router for a free
    # connection or a dial slot instead of flooding the app's listen backlog with SYNs.
    max_connecting_per_endpoint: int = 8

    @classmethod
    def from_config(cls, config: Config) -> RouterConfig:
        """Map the user-facing config sections onto router settings."""
        return cls(tag_header_routing=config.features.tag_header_based_routing == "enabled")
