"""Route traffic resolution (pure): spec.traffic + the objects it names → status.traffic or a reason.

Follows Knative's `pkg/reconciler/route/traffic`: latestRevision targets follow the Configuration's
latestReadyRevisionName; a target that is not ready yet makes AllTrafficAssigned Unknown, a missing or
failed one makes it False, and in both cases the previously programmed traffic stays in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wisp.api.meta import get_condition
from wisp.controllers.urls import URLMaker

Obj = dict[str, Any]
SERVICE_LABEL = "serving.knative.dev/service"
CONFIG_LABEL = "serving.knative.dev/configuration"


@dataclass(frozen=True)
class Assigned:
    """One resolved target; the data plane routes `percent` of the main host to `revision`."""

    revision: str
    percent: int
    tag: str = ""
    latest: bool = False
    configuration: str = ""


@dataclass(frozen=True)
class Resolution:
    status: str  # "True" | "False" | "Unknown" for AllTrafficAssigned
    reason: str = ""
    message: str = ""
    targets: tuple[Assigned, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == "True"


def _ready(obj: Obj) -> str:
    return str((get_condition(obj, "Ready") or {}).get("status", "Unknown"))


def _revision_problem(name: str, rev: Obj | None, route: Obj) -> Resolution | None:
    if rev is None:
        return Resolution("False", "RevisionMissing", f'Revision "{name}" referenced in traffic not found.')
    owner_service = (route["metadata"].get("labels") or {}).get(SERVICE_LABEL)
    rev_service = (rev["metadata"].get("labels") or {}).get(SERVICE_LABEL)
    if owner_service and rev_service and rev_service != owner_service:
        return Resolution("False", "RevisionNotOwned",
                          f'Revision "{name}" belongs to Service "{rev_service}", not "{owner_service}".')
    ready = _ready(rev)
    if ready == "False":
        return Resolution("False", "RevisionMissing", f'Revision "{name}" referenced in traffic failed.')
    if ready != "True":
        return Resolution("Unknown", "RevisionMissing", f'Revision "{name}" referenced in traffic not ready.')
    return None


def _config_problem(name: str, cfg: Obj | None) -> Resolution | None:
    if cfg is None:
        return Resolution("False", "ConfigurationMissing",
                          f'Configuration "{name}" referenced in traffic not found.')
    if not (cfg.get("status") or {}).get("latestReadyRevisionName"):
        if _ready(cfg) == "False":
            return Resolution("False", "RevisionMissing",
                              f'Configuration "{name}" does not have any ready Revision.')
        return Resolution("Unknown", "RevisionMissing",
                          f'Configuration "{name}" is waiting for a Revision to become ready.')
    return None


def resolve(route: Obj, configurations: Mapping[str, Obj | None],
            revisions: Mapping[str, Obj | None]) -> Resolution:
    """Resolve every target, or report the first one that cannot be resolved (False beats Unknown)."""
    assigned: list[Assigned] = []
    pending: Resolution | None = None
    for target in (route.get("spec") or {}).get("traffic") or []:
        percent = int(target.get("percent") or 0)
        tag = target.get("tag") or ""
        if target.get("revisionName"):
            name = target["revisionName"]
            problem = _revision_problem(name, revisions.get(name), route)
            config = ((revisions.get(name) or {}).get("metadata", {}).get("labels") or {}).get(CONFIG_LABEL, "")
            latest = False
        else:
            config = target.get("configurationName") or route["metadata"]["name"]
            cfg = configurations.get(config)
            problem = _config_problem(config, cfg)
            name = ((cfg or {}).get("status") or {}).get("latestReadyRevisionName", "")
            latest = True
        if problem is not None:
            if problem.status == "False":
                return problem
            pending = pending or problem
            continue
        assigned.append(Assigned(name, percent, tag, latest, config))
    if pending is not None:
        return pending
    return Resolution("True", targets=tuple(assigned))


def status_traffic(targets: tuple[Assigned, ...], route_name: str, namespace: str,
                   urls: URLMaker) -> list[Obj]:
    """`status.traffic` as Knative writes it: revisionName always, url only for tagged targets."""
    out: list[Obj] = []
    for t in targets:
        entry: Obj = {"revisionName": t.revision, "latestRevision": t.latest, "percent": t.percent}
        if t.tag:
            entry["tag"] = t.tag
            entry["url"] = urls.route_url(route_name, namespace, t.tag)
        out.append(entry)
    return out


def referenced_names(route: Obj) -> set[tuple[str, str]]:
    """("configuration"|"revision", name) pairs the route's spec names, for change indexing."""
    out: set[tuple[str, str]] = set()
    for target in (route.get("spec") or {}).get("traffic") or []:
        if target.get("revisionName"):
            out.add(("revision", target["revisionName"]))
        else:
            out.add(("configuration", target.get("configurationName") or route["metadata"]["name"]))
    return out
