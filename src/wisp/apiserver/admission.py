"""Admission: what the Kubernetes API server plus Knative's webhooks do to a write before it is stored.

Checks that the body names the kind and namespace of the endpoint, applies defaults, stamps the
creator/lastModifier annotations, and validates. Pure apart from reading the config.
"""

from __future__ import annotations

from typing import Any

from wisp.api import kinds
from wisp.api.errors import BadRequest, Invalid, MethodNotAllowed
from wisp.api.kinds import Kind
from wisp.api.validation import default_object, validate_object
from wisp.config import Config

CREATOR = "serving.knative.dev/creator"
LAST_MODIFIER = "serving.knative.dev/lastModifier"
_STAMPED = {kinds.lookup(n) for n in ("ksvc", "configurations", "routes")}
_REVISION = kinds.lookup("revisions")
_NON_SPEC = {"apiVersion", "kind", "metadata", "status"}


def check_identity(kind: Kind, obj: dict[str, Any], namespace: str, name: str | None) -> None:
    """The body must describe the object the URL names."""
    api_version, obj_kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != kind.api_version:
        raise BadRequest(f"the API version in the data ({api_version}) does not match the expected "
                         f"API version ({kind.api_version})")
    if obj_kind and obj_kind != kind.kind:
        raise BadRequest(f"the kind in the data ({obj_kind}) does not match the expected kind ({kind.kind})")
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise BadRequest("metadata must be an object")
    if kind.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and body_ns != namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent "
                             "on the request")
        meta["namespace"] = namespace
    if name is not None and meta.get("name") not in (None, name):
        raise BadRequest(f'the name of the object ({meta.get("name")}) does not match the name on the '
                         f"URL ({name})")
    if name is not None:
        meta["name"] = name
    obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind


def _stamp(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None, user: str) -> None:
    if kind not in _STAMPED:
        return
    annotations = obj["metadata"].setdefault("annotations", {})
    if old is None:
        annotations[CREATOR] = user
        annotations[LAST_MODIFIER] = user
        return
    old_annotations = old.get("metadata", {}).get("annotations") or {}
    if CREATOR in old_annotations:
        annotations[CREATOR] = old_annotations[CREATOR]
    spec_changed = {k: v for k, v in obj.items() if k not in _NON_SPEC} != {
        k: v for k, v in old.items() if k not in _NON_SPEC}
    if spec_changed or LAST_MODIFIER not in old_annotations:
        annotations[LAST_MODIFIER] = user
    else:
        annotations[LAST_MODIFIER] = old_annotations[LAST_MODIFIER]


def admit(kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None, config: Config,
          user: str) -> dict[str, Any]:
    """Default, stamp and validate an incoming object; returns the object to store."""
    if old is None and kind == _REVISION:
        raise MethodNotAllowed("Revisions are created by their Configuration; create or update a "
                               "Service or Configuration instead", kind=kind.kind)
    obj = default_object(kind, obj, config)
    _stamp(kind, obj, old, user)
    errors = validate_object(kind, obj, old, config)
    if errors:
        meta = obj.get("metadata", {})
        raise Invalid.of(kind.kind, meta.get("name") or meta.get("generateName", ""), errors)
    return obj
