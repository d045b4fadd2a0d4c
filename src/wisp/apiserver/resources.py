"""CRUD, PATCH and watch over the store, with Kubernetes API conventions."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wisp.api import kinds
from wisp.api.errors import BadRequest, MethodNotAllowed, NotFound
from wisp.api.kinds import Kind
from wisp.api.selectors import Selector, parse_selector
from wisp.apiserver import bodies
from wisp.apiserver.admission import admit, check_identity
from wisp.apiserver.status import status_body
from wisp.apiserver.tables import to_table, wants_table
from wisp.config import Config
from wisp.store import Store, Watcher

_DEFAULT_USER = getpass.getuser() or "anonymous"


@dataclass
class Target:
    """What a resource URL names."""

    kind: Kind
    namespace: str | None  # None: across all namespaces (lists and watches only)
    name: str | None = None
    subresource: str = ""


def render(request: Request, body: Any, status: int = 200) -> Response:
    """JSON by default; YAML when asked with `?output=yaml` or an `Accept` YAML header."""
    accept = request.headers.get("accept", "")
    if request.query_params.get("output") == "yaml" or "yaml" in accept.split(",")[0]:
        return Response(yaml.safe_dump(body, sort_keys=False), status, media_type="application/yaml")
    return Response(json.dumps(body, separators=(",", ":")), status, media_type="application/json")


def _user(request: Request) -> str:
    return request.headers.get("impersonate-user") or request.headers.get("x-wisp-user") or _DEFAULT_USER


def _dry_run(request: Request) -> bool:
    return "All" in request.query_params.getlist("dryRun")


def _field_filter(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `fieldSelector` subset kubectl uses: metadata.name and metadata.namespace equality."""
    text = request.query_params.get("fieldSelector", "")
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = term.replace("==", "=").partition("=")
        negate = key.endswith("!")
        key = key.rstrip("!")
        if not sep or key not in ("metadata.name", "metadata.namespace"):
            raise BadRequest(f'field label not supported: "{key}"')
        field = key.split(".")[1]
        items = [o for o in items if (o["metadata"].get(field) == value) != negate]
    return items


class ResourceAPI:
    """Handlers for every kind; one instance per server."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def handle(self, request: Request, target: Target) -> Response:
        method = request.method
        if target.subresource not in ("", "status"):
            raise NotFound(f'the server could not find the requested resource "{target.subresource}"')
        if target.name is None:
            if method == "GET":
                return await self._list_or_watch(request, target)
            if method == "POST":
                return await self._create(request, target)
            if method == "DELETE":
                return self._delete_collection(request, target)
        else:
            if method == "GET":
                obj = self._get(target)
                if wants_table(request.headers.get("accept", "")) and not target.subresource:
                    return render(request, to_table(target.kind, [obj], obj["metadata"]["resourceVersion"],
                                                     self.store.clock.now()))
                return render(request, obj)
            if method == "PUT":
                return await self._replace(request, target)
            if method == "PATCH":
                return await self._patch(request, target)
            if method == "DELETE":
                return await self._delete(request, target)
        raise MethodNotAllowed(f"method {method} is not supported on this resource")

    # ---- verbs -----------------------------------------------------------------------------

    def _get(self, t: Target) -> dict[str, Any]:
        assert t.name is not None
        return self.store.get(t.kind, t.namespace or "", t.name)

    async def _list_or_watch(self, request: Request, t: Target) -> Response:
        selector = parse_selector(request.query_params.get("labelSelector"))
        if request.query_params.get("watch") in ("true", "1"):
            return self._watch(request, t, selector)
        if t.namespace:
            self._require_namespace(t.namespace)
        items = _field_filter(request, self.store.list(t.kind, t.namespace, selector))
        if wants_table(request.headers.get("accept", "")):
            return render(request, to_table(t.kind, items, str(self.store.resource_version), self.store.clock.now()))
        body = {"apiVersion": t.kind.api_version, "kind": f"{t.kind.kind}List",
                "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items}
        return render(request, body)

    async def _create(self, request: Request, t: Target) -> Response:
        if t.subresource:
            raise MethodNotAllowed("POST is not supported on a subresource")
        obj = await self._read_object(request)
        check_identity(t.kind, obj, t.namespace or "default", None)
        if t.kind.namespaced:
            self._require_namespace(t.namespace or "default")
        obj = admit(t.kind, obj, None, self.config, _user(request))
        if _dry_run(request):
            return render(request, obj, 201)
        return render(request, self.store.create(t.kind, obj), 201)

    async def _replace(self, request: Request, t: Target) -> Response:
        obj = await self._read_object(request)
        return render(request, self._save(request, t, obj))

    async def _patch(self, request: Request, t: Target) -> Response:
        raw = await bodies.read_body(request, self.config.api.max_body_bytes)
        current = self._get(t)
        patched = bodies.apply_patch(current, raw, bodies.media_type(request))
        meta: dict[str, Any] = patched["metadata"] if isinstance(patched.get("metadata"), dict) else {}
        if meta.get("resourceVersion") == current["metadata"].get("resourceVersion"):
            # A patch that did not name a resourceVersion applies to whatever is current.
            meta.pop("resourceVersion", None)
        return render(request, self._save(request, t, patched))

    def _save(self, request: Request, t: Target, obj: dict[str, Any]) -> dict[str, Any]:
        assert t.name is not None
        check_identity(t.kind, obj, t.namespace or "", t.name)
        old = self._get(t)
        if t.subresource == "status":
            return obj if _dry_run(request) else self.store.update_status(t.kind, obj)
        obj = admit(t.kind, obj, old, self.config, _user(request))
        if _dry_run(request):
            return obj
        return self.store.update(t.kind, obj)

    async def _delete(self, request: Request, t: Target) -> Response:
        assert t.name is not None
        cascade = True
        raw = await bodies.read_body(request, self.config.api.max_body_bytes)
        if raw.strip():
            options = bodies.decode_object(raw, bodies.media_type(request))
            cascade = options.get("propagationPolicy", "Background") != "Orphan"
        if request.query_params.get("propagationPolicy") == "Orphan":
            cascade = False
        if _dry_run(request):
            return render(request, self._get(t))
        return render(request, self.store.delete(t.kind, t.namespace or "", t.name, cascade=cascade))

    def _delete_collection(self, request: Request, t: Target) -> Response:
        selector = parse_selector(request.query_params.get("labelSelector"))
        items = self.store.list(t.kind, t.namespace, selector)
        for obj in items:
            self.store.delete(t.kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        return render(request, {"apiVersion": t.kind.api_version, "kind": f"{t.kind.kind}List",
                                "metadata": {}, "items": items})

    # ---- watch -----------------------------------------------------------------------------

    def _watch(self, request: Request, t: Target, selector: Selector) -> Response:
        since_text = request.query_params.get("resourceVersion", "")
        if since_text and not since_text.isdigit():
            raise BadRequest(f"invalid resourceVersion {since_text!r}")
        timeout = float(request.query_params.get("timeoutSeconds") or 0) or None
        watcher = self.store.watch(t.kind, t.namespace, selector, int(since_text or 0) or None)
        table = t.kind if wants_table(request.headers.get("accept", "")) else None
        return StreamingResponse(self._stream(watcher, timeout, table), media_type="application/json")

    async def _stream(self, watcher: Watcher, timeout: float | None,
                      table: Kind | None = None) -> AsyncIterator[bytes]:
        """NDJSON watch events; as one-row Tables when kubectl asked for server-side printing."""
        try:
            async with asyncio.timeout(timeout):
                while (event := await watcher.next()) is not None:
                    wire = event.wire()
                    if table is not None:
                        wire["object"] = to_table(table, [event.object], str(event.resource_version),
                                                  self.store.clock.now())
                    yield json.dumps(wire, separators=(",", ":")).encode() + b"\n"
                yield json.dumps({"type": "ERROR", "object": status_body(
                    410, "Expired", "watch closed: the client fell too far behind")}).encode() + b"\n"
        except TimeoutError:
            return
        finally:
            self.store.stop_watch(watcher)

    # ---- helpers ---------------------------------------------------------------------------

    async def _read_object(self, request: Request) -> dict[str, Any]:
        raw = await bodies.read_body(request, self.config.api.max_body_bytes)
        return bodies.decode_object(raw, bodies.media_type(request))

    def _require_namespace(self, namespace: str) -> None:
        self.store.get(kinds.lookup("namespaces"), "", namespace)
