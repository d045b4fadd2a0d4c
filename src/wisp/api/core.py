"""Validation and defaulting of the core (`v1`) kinds: Namespace, Secret and ConfigMap.

Secrets and ConfigMaps are turned into environment variables and mounted files, so their keys
must be usable as file names; Secret `data` is base64 on the wire, as in Kubernetes.
`stringData` is a write-only convenience that defaulting folds into `data`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from wisp.api import meta
from wisp.api.fields import TOO_LONG, Errors, generic, get_str, invalid, invalid_key, key

MAX_DATA_BYTES = 1024 * 1024


def _decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_keys_and_strings(data: Any, path: str, errs: Errors) -> dict[str, str]:
    """The valid str->str entries of a data map, reporting bad keys and non-string values."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        errs.append(invalid(data, path, "expected a map of strings"))
        return {}
    out: dict[str, str] = {}
    for k, v in data.items():
        problems = meta.config_key_errors(str(k))
        if problems:
            errs.append(invalid_key(str(k), path, "; ".join(problems)))
        if isinstance(v, str):
            out[str(k)] = v
        else:
            errs.append(invalid(v, key(path, str(k)), "expected a string"))
    return out


def _check_size(total: int, path: str, errs: Errors) -> None:
    if total > MAX_DATA_BYTES:
        errs.append(generic(f"Too long: must have at most {MAX_DATA_BYTES} bytes", path, TOO_LONG))


def validate_secret(obj: dict[str, Any], old: dict[str, Any] | None, errs: Errors) -> None:
    data = _check_keys_and_strings(obj.get("data"), "data", errs)
    total = 0
    for k, v in data.items():
        raw = _decode(v)
        if raw is None:
            errs.append(invalid("illegal base64 data", key("data", k), "values in data must be base64; "
                                "use stringData for plain text"))
        else:
            total += len(raw)
    for k, v in _check_keys_and_strings(obj.get("stringData"), "stringData", errs).items():
        total += len(v.encode()) if k not in data else 0
    _check_size(total, "data", errs)
    get_str(obj, "type", "type", errs)
    if old is not None and old.get("immutable") is True and _content(obj) != _content(old):
        errs.append(generic("field is immutable when `immutable` is set", "data", "FieldValueForbidden"))


def validate_config_map(obj: dict[str, Any], old: dict[str, Any] | None, errs: Errors) -> None:
    data = _check_keys_and_strings(obj.get("data"), "data", errs)
    binary = _check_keys_and_strings(obj.get("binaryData"), "binaryData", errs)
    total = sum(len(v.encode()) for v in data.values())
    for k, v in binary.items():
        raw = _decode(v)
        if raw is None:
            errs.append(invalid("illegal base64 data", key("binaryData", k)))
        else:
            total += len(raw)
        if k in data:
            errs.append(generic(f'duplicate of key "{k}" present in data', key("binaryData", k),
                                "FieldValueDuplicate"))
    _check_size(total, "data", errs)
    if old is not None and old.get("immutable") is True and _content(obj) != _content(old):
        errs.append(generic("field is immutable when `immutable` is set", "data", "FieldValueForbidden"))


def _content(obj: dict[str, Any]) -> tuple[Any, ...]:
    return obj.get("data"), obj.get("binaryData"), obj.get("stringData")


def validate_namespace(obj: dict[str, Any], old: dict[str, Any] | None, errs: Errors) -> None:
    """Only the name matters (checked as a DNS-1123 label with the metadata)."""


def default_secret(obj: dict[str, Any]) -> None:
    """Fold `stringData` into base64 `data` (it wins on conflicts) and default the type.

    Left untouched when `stringData` is malformed, so validation can report it.
    """
    obj.setdefault("type", "Opaque")
    plain = obj.get("stringData")
    if plain is None:
        return
    data = obj.get("data")
    if not isinstance(plain, dict) or not all(
            isinstance(v, str) and not meta.config_key_errors(str(k)) for k, v in plain.items()):
        return
    if data is not None and not isinstance(data, dict):
        return
    merged = dict(data or {})
    for k, v in plain.items():
        merged[str(k)] = base64.b64encode(v.encode()).decode("ascii")
    obj["data"] = merged
    del obj["stringData"]
