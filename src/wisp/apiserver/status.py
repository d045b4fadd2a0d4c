"""Kubernetes `Status` objects: how every API error reaches a client."""

from __future__ import annotations

from typing import Any

from wisp.api.errors import APIError


def status_body(code: int, reason: str, message: str, *, kind: str = "", name: str = "",
                causes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if kind:
        details["kind"] = kind.lower() + ("s" if not kind.endswith("s") else "")
    if causes:
        details["causes"] = causes
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message, "reason": reason, "code": code,
    }
    if details:
        body["details"] = details
    return body


def from_error(exc: APIError) -> dict[str, Any]:
    causes = [{"reason": c.reason, "message": c.message, "field": c.field} for c in exc.causes]
    return status_body(exc.code, exc.reason, exc.message, kind=exc.kind, name=exc.name, causes=causes)
