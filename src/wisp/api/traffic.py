"""Traffic targets of a Route or Service: validation and defaulting (`route_validation.go`).

Inside a Service every target implicitly refers to the Service's own Configuration, so
`configurationName` is not allowed there and a target may name neither a revision nor a
configuration.
"""

from __future__ import annotations

import json
from typing import Any

from wisp.api import meta
from wisp.api.fields import (
    DUPLICATE,
    Errors,
    as_int,
    at,
    disallowed,
    generic,
    get_bool,
    get_int,
    get_str,
    got_both,
    got_neither,
    invalid,
    invalid_key,
    items_of,
    out_of_bounds,
)


def validate_traffic(traffic: list[Any], path: str, errs: Errors, *, in_service: bool) -> None:
    """Check each target, tag uniqueness and that the percents add up to exactly 100."""
    tags: dict[str, int] = {}
    total = 0
    for i, target in items_of(traffic, path, errs):
        _validate_target(target, at(path, i), errs, in_service=in_service)
        percent = as_int(target.get("percent"))
        total += percent or 0
        tag = get_str(target, "tag", at(path, i, "tag"), errs)
        if not tag:
            continue
        problems = meta.dns1035_label_errors(tag)
        if problems:
            errs.append(invalid(tag, at(path, i, "tag"), f"not a DNS 1035 label: {'; '.join(problems)}"))
        if tag in tags:
            first = at(path, tags[tag], "tag")
            errs.append(generic(f"Multiple definitions for {json.dumps(tag)} (also at {first})",
                                at(path, i, "tag"), DUPLICATE))
        else:
            tags[tag] = i
    if total != 100:
        errs.append(generic(f"Traffic targets sum to {total}, want 100", path))


def _validate_target(target: dict[str, Any], path: str, errs: Errors, *, in_service: bool) -> None:
    revision = get_str(target, "revisionName", at(path, "revisionName"), errs) or ""
    configuration = get_str(target, "configurationName", at(path, "configurationName"), errs) or ""
    latest = get_bool(target, "latestRevision", at(path, "latestRevision"), errs)
    if latest is not None and latest == bool(revision):
        # Pinning to a revision and floating to the latest one are opposite intents.
        errs.append(generic(f"may not set revisionName {json.dumps(revision)} when latestRevision is "
                            f"{str(latest).lower()}", at(path, "latestRevision")))
    if in_service and configuration:
        errs.append(disallowed(at(path, "configurationName")))
    elif revision and configuration:
        errs.append(got_both(path, "revisionName", "configurationName"))
    elif revision or configuration:
        field, name = ("revisionName", revision) if revision else ("configurationName", configuration)
        problems = meta.qualified_name_errors(name)
        if problems:
            errs.append(invalid_key(name, at(path, field), "; ".join(problems)))
    elif not in_service:
        errs.append(got_neither(path, "revisionName", "configurationName"))
    percent = get_int(target, "percent", at(path, "percent"), errs)
    if percent is not None and not 0 <= percent <= 100:
        errs.append(out_of_bounds(percent, 0, 100, at(path, "percent")))
    if target.get("url") is not None:
        errs.append(disallowed(at(path, "url")))


def default_traffic(spec: dict[str, Any], *, configuration: str | None) -> None:
    """Fill traffic defaults in place.

    Empty traffic means "all of it to the latest revision", which only makes sense where a
    default configuration exists: a Service (`configuration=""`: its own, implicitly) or a Route
    that a Service owns (`configuration=<service name>`, also filled into targets that name
    neither a revision nor a configuration). `None` means there is none.
    """
    traffic = spec.get("traffic")
    if traffic is None or traffic == []:
        if configuration is None:
            return
        target: dict[str, Any] = {"latestRevision": True, "percent": 100}
        if configuration:
            target = {"configurationName": configuration, **target}
        traffic = spec["traffic"] = [target]
    if not isinstance(traffic, list):
        return
    for entry in traffic:
        if not isinstance(entry, dict):
            continue
        if configuration and not entry.get("revisionName") and not entry.get("configurationName"):
            entry["configurationName"] = configuration
        if entry.get("latestRevision") is None:
            entry["latestRevision"] = not entry.get("revisionName")
