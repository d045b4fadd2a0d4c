"""The API server: Kubernetes-style resource paths, discovery, health, and mounted extras."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from wisp.api import kinds
from wisp.api.errors import APIError
from wisp.apiserver import discovery
from wisp.apiserver.resources import ResourceAPI, Target, render
from wisp.apiserver.status import from_error, status_body
from wisp.config import Config
from wisp.store import Store

log = logging.getLogger("wisp.apiserver")
_NAMESPACES = kinds.lookup("namespaces")
_ALL_VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

Handler = Callable[[Request], Awaitable[Response]]


def _error_response(request: Request, exc: APIError) -> Response:
    return render(request, from_error(exc), exc.code)


def _guard(handler: Handler) -> Handler:
    """Turn our error tree into `Status` bodies, and anything unexpected into a logged 500."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except APIError as exc:
            return _error_response(request, exc)
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.url.path)
            return JSONResponse(status_body(500, "InternalError", "internal error; see the server log"), 500)

    return wrapped


def _core_target(request: Request) -> Target:
    p = request.path_params
    if "ns" not in p:  # /api/v1/namespaces[/{name}] or /api/v1/{plural}
        plural = p.get("plural", "namespaces")
        kind = kinds.by_path("", "v1", plural)
        if kind == _NAMESPACES:
            return Target(kind, None, p.get("name"), p.get("sub", ""))
        return Target(kind, None)
    return Target(kinds.by_path("", "v1", p["plural"]), p["ns"], p.get("name"), p.get("sub", ""))


def _group_target(request: Request) -> Target:
    p = request.path_params
    kind = kinds.by_path(p["group"], p["version"], p["plural"])
    if not kind.namespaced and "ns" in p:
        raise APIError("cluster-scoped resource has no namespace")
    return Target(kind, p.get("ns"), p.get("name"), p.get("sub", ""))


def build_routes(api: ResourceAPI, server_address: str) -> list[BaseRoute]:
    async def core(request: Request) -> Response:
        return await api.handle(request, _core_target(request))

    async def grouped(request: Request) -> Response:
        return await api.handle(request, _group_target(request))

    async def version(request: Request) -> Response:
        return render(request, discovery.version())

    async def api_root(request: Request) -> Response:
        return render(request, discovery.core_versions(server_address))

    async def apis_root(request: Request) -> Response:
        return render(request, discovery.group_list())

    async def api_group(request: Request) -> Response:
        return render(request, discovery.group(request.path_params["group"]))

    async def api_resources(request: Request) -> Response:
        p = request.path_params
        return render(request, discovery.resource_list(p.get("group", ""), p.get("version", "v1")))

    async def openapi_index(request: Request) -> Response:
        return render(request, discovery.openapi_index())

    async def openapi_core(request: Request) -> Response:
        return render(request, discovery.openapi_document("", request.path_params["version"]))

    async def openapi_group(request: Request) -> Response:
        p = request.path_params
        return render(request, discovery.openapi_document(p["group"], p["version"]))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    g = _guard
    return [
        Route("/healthz", healthz), Route("/readyz", healthz), Route("/livez", healthz),
        Route("/version", g(version)),
        Route("/openapi/v3", g(openapi_index)),
        Route("/openapi/v3/api/{version}", g(openapi_core)),
        Route("/openapi/v3/apis/{group}/{version}", g(openapi_group)),
        Route("/api", g(api_root)),
        Route("/api/v1", g(api_resources)),
        Route("/api/v1/namespaces", g(core), methods=_ALL_VERBS),
        Route("/api/v1/namespaces/{name}", g(core), methods=_ALL_VERBS),
        Route("/api/v1/{plural}", g(core), methods=_ALL_VERBS),
        Route("/api/v1/namespaces/{ns}/{plural}", g(core), methods=_ALL_VERBS),
        Route("/api/v1/namespaces/{ns}/{plural}/{name}", g(core), methods=_ALL_VERBS),
        Route("/api/v1/namespaces/{ns}/{plural}/{name}/{sub}", g(core), methods=_ALL_VERBS),
        Route("/apis", g(apis_root)),
        Route("/apis/{group}", g(api_group)),
        Route("/apis/{group}/{version}", g(api_resources)),
        Route("/apis/{group}/{version}/{plural}", g(grouped), methods=_ALL_VERBS),
        Route("/apis/{group}/{version}/namespaces/{ns}/{plural}", g(grouped), methods=_ALL_VERBS),
        Route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", g(grouped), methods=_ALL_VERBS),
        Route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/{sub}", g(grouped),
              methods=_ALL_VERBS),
    ]


def create_app(store: Store, config: Config, *, server_address: str = "127.0.0.1:9477",
               extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app; `extra_routes` (registry, logs, dashboard…) are mounted before the resources."""
    api = ResourceAPI(store, config)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse(status_body(404, "NotFound", "the server could not find the requested resource"),
                            404)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse(status_body(405, "MethodNotAllowed", f"method {request.method} is not allowed"),
                            405)

    return Starlette(routes=[*extra_routes, *build_routes(api, server_address)],
                     exception_handlers={404: not_found, 405: method_not_allowed})
