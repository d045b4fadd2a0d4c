"""Checks on `metadata` that every kind shares: name syntax, labels and annotations."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from wisp.api import meta
from wisp.api.fields import (
    REQUIRED,
    TOO_LONG,
    Errors,
    at,
    generic,
    get_map,
    get_str,
    invalid,
    invalid_key,
    key,
)

ANNOTATIONS_MAX_BYTES = 256 * 1024


class NameRule(Enum):
    """Which syntax a kind's names must follow (they end up in hostnames, paths or file names)."""

    DNS1123_SUBDOMAIN = "DNS 1123 subdomain"
    DNS1123_LABEL = "DNS 1123 label"
    DNS1035_LABEL = "DNS 1035 label"

    def errors(self, name: str) -> list[str]:
        return _CHECKS[self](name)


_CHECKS: dict[NameRule, Callable[[str], list[str]]] = {
    NameRule.DNS1123_SUBDOMAIN: meta.dns1123_subdomain_errors,
    NameRule.DNS1123_LABEL: meta.dns1123_label_errors,
    NameRule.DNS1035_LABEL: meta.dns1035_label_errors,
}


def check_name(name: str, rule: NameRule, path: str, errs: Errors, *, prefix: bool = False) -> None:
    """Report `name` (or a `generateName` prefix) that breaks `rule`."""
    problems = rule.errors(meta.as_name_prefix(name) if prefix else name)
    if problems:
        what = f"{rule.value} prefix" if prefix else rule.value
        errs.append(invalid(name, path, f"not a {what}: {'; '.join(problems)}"))


def validate_metadata(obj: dict[str, Any], rule: NameRule, errs: Errors, *,
                      path: str = "metadata", allow_generate_name: bool = True) -> dict[str, Any]:
    """Check name/generateName, labels and annotations; returns the metadata (or {} if unusable)."""
    md = get_map(obj, "metadata", path, errs)
    if md is None:
        errs.append(generic("name or generateName is required", at(path, "name"), REQUIRED))
        return {}
    name = get_str(md, "name", at(path, "name"), errs)
    generate = get_str(md, "generateName", at(path, "generateName"), errs)
    if generate and not allow_generate_name:
        errs.append(generic("must not set the field(s)", at(path, "generateName"), "FieldValueForbidden"))
    elif generate:
        check_name(generate, rule, at(path, "generateName"), errs, prefix=True)
    if name:
        check_name(name, rule, at(path, "name"), errs)
    elif not generate:
        errs.append(generic("name or generateName is required", at(path, "name"), REQUIRED))
    validate_labels(md.get("labels"), at(path, "labels"), errs)
    validate_annotations(md.get("annotations"), at(path, "annotations"), errs)
    return md


def _string_map(value: Any, path: str, errs: Errors) -> dict[str, str]:
    """The str->str entries of a map; other shapes are reported."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.append(invalid(value, path, "expected a map of strings"))
        return {}
    out = {}
    for k, v in value.items():
        if isinstance(v, str):
            out[str(k)] = v
        else:
            errs.append(invalid(v, key(path, str(k)), "expected a string"))
    return out


def validate_labels(labels: Any, path: str, errs: Errors) -> None:
    """Label keys are qualified names; values are at most 63 characters of a restricted set."""
    for k, v in _string_map(labels, path, errs).items():
        problems = meta.qualified_name_errors(k)
        if problems:
            errs.append(invalid_key(k, path, "; ".join(problems)))
        value_problems = meta.label_value_errors(v)
        if value_problems:
            errs.append(invalid(v, key(path, k), "; ".join(value_problems)))


def validate_annotations(annotations: Any, path: str, errs: Errors) -> None:
    """Annotation keys are qualified names (case-insensitive); all values together ≤ 256 KiB."""
    entries = _string_map(annotations, path, errs)
    total = 0
    for k, v in entries.items():
        problems = meta.qualified_name_errors(k.lower())
        if problems:
            errs.append(invalid_key(k, path, "; ".join(problems)))
        total += len(k) + len(v.encode())
    if total > ANNOTATIONS_MAX_BYTES:
        errs.append(generic(f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes", path, TOO_LONG))


def string_map(value: Any) -> dict[str, str]:
    """The well-formed str->str entries of a labels/annotations map, ignoring anything else."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}
