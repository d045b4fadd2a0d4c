"""Service → one Configuration and one Route of the same name; status rolled up from both."""

from __future__ import annotations

import copy

from wisp.api.meta import FALSE, TRUE, UNKNOWN, ConditionSet, get_condition, set_condition
from wisp.controllers.base import (
    CONFIGURATION,
    ROUTE,
    SERVICE,
    Context,
    Key,
    Obj,
    child_meta,
    is_owned_by,
    working_copy,
    write_status,
)

SERVICE_LABEL = "serving.knative.dev/service"
SERVICE_CONDITIONS = ConditionSet("Ready", ["ConfigurationsReady", "RoutesReady"])


def desired_configuration(svc: Obj) -> Obj:
    name = svc["metadata"]["name"]
    return {
        "apiVersion": CONFIGURATION.api_version, "kind": CONFIGURATION.kind,
        "metadata": child_meta(svc, name, {SERVICE_LABEL: name}),
        "spec": {"template": copy.deepcopy((svc.get("spec") or {}).get("template") or {})},
    }


def desired_route(svc: Obj) -> Obj:
    name = svc["metadata"]["name"]
    traffic = copy.deepcopy((svc.get("spec") or {}).get("traffic") or [])
    return {
        "apiVersion": ROUTE.api_version, "kind": ROUTE.kind,
        "metadata": child_meta(svc, name, {SERVICE_LABEL: name}),
        "spec": {"traffic": traffic},
    }


def _sync_child(ctx: Context, kind_obj: Obj, svc: Obj) -> tuple[Obj | None, str]:
    """Create or update the child so its spec, labels and annotations match; '' or a NotOwned message."""
    kind = CONFIGURATION if kind_obj["kind"] == CONFIGURATION.kind else ROUTE
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    current = ctx.store.find(kind, ns, name)
    if current is None:
        return ctx.store.create(kind, kind_obj), ""
    if not is_owned_by(current, svc):
        return None, f'There is an existing {kind.kind} "{name}" that we do not own.'
    want_meta = kind_obj["metadata"]
    cur_meta = current["metadata"]
    if (current.get("spec") == kind_obj["spec"] and cur_meta.get("labels", {}) == want_meta["labels"]
            and cur_meta.get("annotations", {}) == want_meta["annotations"]):
        return current, ""
    updated = working_copy(current)
    updated["spec"] = kind_obj["spec"]
    updated["metadata"]["labels"] = want_meta["labels"]
    updated["metadata"]["annotations"] = want_meta["annotations"]
    updated["metadata"]["ownerReferences"] = want_meta["ownerReferences"]
    return ctx.store.update(kind, updated), ""


def _propagate(svc: Obj, ctype: str, child: Obj | None, now: float) -> None:
    """Copy a child's Ready into ConfigurationsReady / RoutesReady, but only once it has caught up."""
    if child is None:
        set_condition(svc, ctype, UNKNOWN, "Deploying", "", now=now)
        return
    observed = (child.get("status") or {}).get("observedGeneration")
    ready = get_condition(child, "Ready")
    if observed != child["metadata"].get("generation") or ready is None:
        kind = "Configuration" if ctype == "ConfigurationsReady" else "Route"
        set_condition(svc, ctype, UNKNOWN, "OutOfDate",
                      f"The {kind} is still working to reflect the latest desired specification.", now=now)
        return
    set_condition(svc, ctype, ready["status"], ready.get("reason", ""), ready.get("message", ""), now=now)


def _rollup(svc: Obj, cfg: Obj | None, route: Obj | None, now: float) -> None:
    status = svc.setdefault("status", {})
    cfg_status = (cfg or {}).get("status") or {}
    for key in ("latestReadyRevisionName", "latestCreatedRevisionName"):
        if cfg_status.get(key):
            status[key] = cfg_status[key]
    route_status = (route or {}).get("status") or {}
    for key in ("url", "address", "traffic"):
        if key in route_status:
            status[key] = copy.deepcopy(route_status[key])
    _propagate(svc, "ConfigurationsReady", cfg, now)
    _propagate(svc, "RoutesReady", route, now)
    SERVICE_CONDITIONS.recompute(svc, now)


async def reconcile_service(ctx: Context, key: Key) -> None:
    ns, name = key
    svc = ctx.store.find(SERVICE, ns, name)
    if svc is None:
        return  # children go with it by cascading delete
    now = ctx.now()
    updated = working_copy(svc)
    SERVICE_CONDITIONS.initialize(updated, now)
    cfg, cfg_problem = _sync_child(ctx, desired_configuration(svc), svc)
    route, route_problem = _sync_child(ctx, desired_route(svc), svc)
    if cfg_problem or route_problem:
        ctype = "ConfigurationsReady" if cfg_problem else "RoutesReady"
        set_condition(updated, ctype, FALSE, "NotOwned", cfg_problem or route_problem, now=now)
        SERVICE_CONDITIONS.recompute(updated, now)
    else:
        _rollup(updated, cfg, route, now)
    updated["status"]["observedGeneration"] = svc["metadata"].get("generation", 1)
    write_status(ctx, SERVICE, svc, updated)


def service_is_ready(svc: Obj) -> bool:
    cond = get_condition(svc, "Ready")
    return bool(cond and cond.get("status") == TRUE)
