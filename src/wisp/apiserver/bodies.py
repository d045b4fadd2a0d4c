"""Request bodies: bounded reads, JSON/YAML decoding, and the PATCH flavours Kubernetes clients send."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import yaml
from starlette.requests import Request

from wisp.api.errors import BadRequest, TooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json", "")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) anything over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode(raw: bytes, content_type: str) -> Any:
    """Parse a JSON or YAML document; anything unparseable is a 400 that says where."""
    if not raw.strip():
        raise BadRequest("request body is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    if content_type in YAML_TYPES or content_type == APPLY_PATCH:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadRequest(f"invalid YAML: {_one_line(exc)}") from None
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None
    raise UnsupportedMediaType(f'unsupported content type "{content_type}"; use application/json or YAML')


def decode_object(raw: bytes, content_type: str) -> dict[str, Any]:
    obj = decode(raw, content_type)
    if not isinstance(obj, dict):
        raise BadRequest(f"request body must be an object, not {type(obj).__name__}")
    return obj


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_directives(patch: Any) -> Any:
    """Drop strategic-merge directives (`$patch`, `$retainKeys`, …), leaving a merge patch."""
    if isinstance(patch, dict):
        return {k: _strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [_strip_directives(v) for v in patch]
    return patch


def apply_patch(current: dict[str, Any], raw: bytes, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of the given type to `current`, returning the new object."""
    if content_type == JSON_PATCH:
        ops = decode(raw, "application/json")
        if not isinstance(ops, list):
            raise BadRequest("a JSON patch must be a list of operations")
        try:
            result = jsonpatch.apply_patch(current, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
            raise BadRequest(f"the JSON patch could not be applied: {exc}") from None
    elif content_type in (MERGE_PATCH, STRATEGIC_PATCH):
        # Strategic merge patch is served as a merge patch: for our kinds the list-merge keys it
        # would use do not exist, so the two agree except for directives, which are dropped.
        patch = decode(raw, "application/json")
        if not isinstance(patch, dict):
            raise BadRequest("a merge patch must be a JSON object")
        result = merge_patch(current, _strip_directives(patch))
    else:
        raise UnsupportedMediaType(
            f'unsupported patch type "{content_type}"; use {MERGE_PATCH} or {JSON_PATCH}')
    if not isinstance(result, dict):
        raise BadRequest("the patch must leave an object")
    return result


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
