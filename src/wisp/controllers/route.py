"""Route: resolve traffic targets, program the ingress, mark revisions' routing state, write status."""

from __future__ import annotations

from wisp.api.meta import TRUE, ConditionSet, set_condition
from wisp.clock import rfc3339
from wisp.controllers import traffic
from wisp.controllers.base import (
    CONFIGURATION,
    REVISION,
    ROUTE,
    Context,
    Key,
    Obj,
    working_copy,
    write_status,
)

ROUTE_CONDITIONS = ConditionSet("Ready", ["AllTrafficAssigned", "IngressReady", "CertificateProvisioned"])
ROUTING_STATE = "serving.knative.dev/routingState"
ROUTING_STATE_MODIFIED = "serving.knative.dev/routingStateModified"
ROUTES_ANNOTATION = "serving.knative.dev/routes"


def _lookups(ctx: Context, route: Obj) -> tuple[dict[str, Obj | None], dict[str, Obj | None]]:
    ns = route["metadata"]["namespace"]
    configs: dict[str, Obj | None] = {}
    revisions: dict[str, Obj | None] = {}
    for what, name in traffic.referenced_names(route):
        if what == "configuration":
            configs[name] = ctx.store.find(CONFIGURATION, ns, name)
        else:
            revisions[name] = ctx.store.find(REVISION, ns, name)
    return configs, revisions


def _set_routing_state(ctx: Context, ns: str, rev_name: str, route_name: str, active: bool) -> None:
    rev = ctx.store.find(REVISION, ns, rev_name)
    if rev is None:
        return
    meta = rev["metadata"]
    labels = meta.get("labels") or {}
    routes = {r for r in (meta.get("annotations") or {}).get(ROUTES_ANNOTATION, "").split(",") if r}
    routes = routes | {route_name} if active else routes - {route_name}
    state = "active" if routes else "reserve"
    if labels.get(ROUTING_STATE) == state and (meta.get("annotations") or {}).get(
            ROUTES_ANNOTATION, "") == ",".join(sorted(routes)):
        return
    updated = working_copy(rev)
    umeta = updated["metadata"]
    umeta.setdefault("labels", {})[ROUTING_STATE] = state
    annotations = umeta.setdefault("annotations", {})
    annotations[ROUTING_STATE_MODIFIED] = rfc3339(ctx.now())
    if routes:
        annotations[ROUTES_ANNOTATION] = ",".join(sorted(routes))
    else:
        annotations.pop(ROUTES_ANNOTATION, None)
    ctx.store.update(REVISION, updated)


def _mark_revisions(ctx: Context, route: Obj, assigned: tuple[traffic.Assigned, ...]) -> None:
    ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
    now_names = {a.revision for a in assigned}
    before = {t.get("revisionName") for t in (route.get("status") or {}).get("traffic") or []}
    for rev_name in now_names:
        _set_routing_state(ctx, ns, rev_name, name, active=True)
    for rev_name in before - now_names:
        if rev_name:
            _set_routing_state(ctx, ns, rev_name, name, active=False)


async def reconcile_route(ctx: Context, key: Key) -> None:
    ns, name = key
    route = ctx.store.find(ROUTE, ns, name)
    if route is None:
        program = ctx.hooks.get("unprogram_route")
        if program:
            program(ns, name)
        return
    now = ctx.now()
    updated = working_copy(route)
    ROUTE_CONDITIONS.initialize(updated, now)
    configs, revisions = _lookups(ctx, route)
    resolution = traffic.resolve(route, configs, revisions)
    status = updated.setdefault("status", {})
    url = ctx.urls.route_url(name, ns)
    status["url"] = url
    status["address"] = {"url": url}
    if resolution.ok:
        program = ctx.hooks.get("program_route")
        if program:
            await program(route, resolution.targets)
        # Only after the ingress points at the new targets may old revisions drain and stop.
        _mark_revisions(ctx, route, resolution.targets)
        status["traffic"] = traffic.status_traffic(resolution.targets, name, ns, ctx.urls)
        set_condition(updated, "AllTrafficAssigned", TRUE, now=now)
        set_condition(updated, "IngressReady", TRUE, now=now)
    else:
        # Leave status.traffic (and the programmed ingress) as they were: old targets keep serving.
        set_condition(updated, "AllTrafficAssigned", resolution.status, resolution.reason, resolution.message,
                      now=now)
        if "traffic" not in status:
            set_condition(updated, "IngressReady", "Unknown", "Uninitialized",
                          "Waiting for traffic to be assigned.", now=now)
    set_condition(updated, "CertificateProvisioned", TRUE, "TLSNotEnabled",
                  "TLS is not enabled for this Route.", now=now)
    ROUTE_CONDITIONS.recompute(updated, now)
    status["observedGeneration"] = route["metadata"].get("generation", 1)
    write_status(ctx, ROUTE, route, updated)
