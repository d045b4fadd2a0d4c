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


def _gv_path(group_name: str, version_name: str) -> str:
    return f"apis/{group_name}/{version_name}" if group_name else f"api/{version_name}"


def openapi_index() -> dict[str, Any]:
    """`/openapi/v3`: one document per group-version, as kubectl expects."""
    paths = {}
    for group_name, versions in kinds.group_versions().items():
        for v in versions:
            gv = _gv_path(group_name, v)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={wisp.__version__}"}
    return {"paths": paths}


def _operation(k: kinds.Kind, verb: str) -> dict[str, Any]:
    # Advertising `fieldValidation` makes kubectl validate on the server (which keeps unknown
    # fields, as Knative YAML needs) instead of asking for full schemas.
    return {
        "operationId": f"{verb}{k.kind}",
        "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                       {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
    }


def openapi_document(group_name: str, version_name: str) -> dict[str, Any]:
    """A minimal OpenAPI v3 document for one group-version: paths and verbs, schemas left open."""
    served = [k for k in kinds.ALL if k.group == group_name and k.version == version_name]
    if not served:
        raise NotFound(f"no OpenAPI document for {_gv_path(group_name, version_name)}")
    paths: dict[str, Any] = {}
    for k in served:
        base = "/" + _gv_path(group_name, version_name)
        collection = f"{base}/namespaces/{{namespace}}/{k.plural}" if k.namespaced else f"{base}/{k.plural}"
        paths[collection] = {"post": _operation(k, "post"), "get": _operation(k, "list")}
        paths[f"{collection}/{{name}}"] = {verb: _operation(k, action) for verb, action in (
            ("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete"))}
    return {"openapi": "3.0.0", "info": {"title": "wisp", "version": wisp.__version__}, "paths": paths,
            "components": {"schemas": {}}}
