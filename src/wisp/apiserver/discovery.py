"""Kubernetes discovery documents, so `kubectl --server` finds our kinds."""

from __future__ import annotations

from typing import Any

import wisp
from wisp.api import kinds
from wisp.api.errors import NotFound

_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def version() -> dict[str, Any]:
    return {"major": "1", "minor": "30", "gitVersion": f"v1.30.0+wisp-{wisp.__version__}",
            "platform": "linux/amd64", "goVersion": "python"}


def core_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_doc(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def group_list() -> dict[str, Any]:
    groups = [_group_doc(g, vs) for g, vs in kinds.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(name: str) -> dict[str, Any]:
    versions = kinds.group_versions().get(name)
    if not name or not versions:
        raise NotFound(f"the server could not find the requested resource (group {name})")
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(name, versions)}


def resource_list(group_name: str, version_name: str) -> dict[str, Any]:
    served = [k for k in kinds.ALL if k.group == group_name and k.version == version_name]
    if not served:
        gv = f"{group_name}/{version_name}" if group_name else version_name
        raise NotFound(f"the server could not find the requested resource ({gv})")
    resources: list[dict[str, Any]] = []
    for k in served:
        resources.append({"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                          "kind": k.kind, "verbs": _VERBS, "shortNames": list(k.short_names),
                          "categories": ["all", "knative"] if k.group else []})
        if k.has_status:
            resources.append({"name": f"{k.plural}/status", "singularName": "", "namespaced": k.namespaced,
                              "kind": k.kind, "verbs": ["get", "patch", "update"]})
    gv = f"{group_name}/{version_name}" if group_name else version_name
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
