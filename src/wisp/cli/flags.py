"""Pure translation of `kn`-style flags into changes to a Service object."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from wisp.cli.client import CLIError

Obj = dict[str, Any]
LATEST = "@latest"


@dataclass
class ServiceFlags:
    """What the user asked for on `service create|update`."""

    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[str] = field(default_factory=list)
    env_from: list[str] = field(default_factory=list)
    port: str | None = None
    concurrency_limit: int | None = None
    scale_min: int | None = None
    scale_max: int | None = None
    annotations: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    revision_name: str | None = None
    traffic: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    untag: list[str] = field(default_factory=list)
    working_dir: str | None = None
    clear_command: bool = False  # the image (from --source) carries the command now


def _kv(items: list[str], what: str) -> tuple[dict[str, str], set[str]]:
    """`K=V` sets, `K-` removes (as kn does)."""
    sets: dict[str, str] = {}
    removes: set[str] = set()
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
            if not key:
                raise CLIError(f"{what} must look like KEY=VALUE or KEY-, not {item!r}")
            sets[key] = value
        elif item.endswith("-") and len(item) > 1:
            removes.add(item[:-1])
        else:
            raise CLIError(f"{what} must look like KEY=VALUE or KEY-, not {item!r}")
    return sets, removes


def _apply_map(target: dict[str, str], items: list[str], what: str) -> dict[str, str]:
    sets, removes = _kv(items, what)
    out = {k: v for k, v in target.items() if k not in removes}
    out.update(sets)
    return out


def _container(svc: Obj) -> Obj:
    spec = svc.setdefault("spec", {}).setdefault("template", {}).setdefault("spec", {})
    containers = spec.setdefault("containers", [{}])
    if not containers:
        containers.append({})
    container: Obj = containers[0]
    return container


def _apply_env(container: Obj, flags: ServiceFlags) -> None:
    if flags.env:
        current = {e["name"]: e for e in container.get("env") or [] if isinstance(e, dict) and "name" in e}
        sets, removes = _kv(flags.env, "--env")
        for name in removes:
            current.pop(name, None)
        for name, value in sets.items():
            current[name] = {"name": name, "value": value}
        container["env"] = list(current.values())
    if flags.env_from:
        sources = list(container.get("envFrom") or [])
        for item in flags.env_from:
            remove = item.endswith("-")
            kind, sep, name = item.rstrip("-").partition(":")
            key = {"config-map": "configMapRef", "cm": "configMapRef", "secret": "secretRef"}.get(kind)
            if not sep or not key or not name:
                raise CLIError(f"--env-from must be config-map:NAME or secret:NAME, not {item!r}")
            sources = [s for s in sources if s.get(key, {}).get("name") != name]
            if not remove:
                sources.append({key: {"name": name}})
        container["envFrom"] = sources


def _apply_port(container: Obj, port: str) -> None:
    name, sep, number = port.rpartition(":")
    if not number.isdigit():
        raise CLIError(f"--port must be [NAME:]NUMBER, not {port!r}")
    entry: Obj = {"containerPort": int(number)}
    if sep:
        entry["name"] = name
    container["ports"] = [entry]


def _annotation_map(meta: Obj, items: list[str]) -> None:
    if items:
        meta["annotations"] = _apply_map(meta.get("annotations") or {}, items, "--annotation")


def apply_flags(svc: Obj, flags: ServiceFlags, *, service_name: str) -> Obj:
    """Return a copy of `svc` with the flags applied to its template, metadata and traffic."""
    svc = copy.deepcopy(svc)
    container = _container(svc)
    template = svc["spec"]["template"]
    tmeta = template.setdefault("metadata", {})
    tspec = template["spec"]
    if flags.image is not None:
        container["image"] = flags.image
    if flags.clear_command:
        for key in ("command", "args", "workingDir"):
            container.pop(key, None)
    if flags.command is not None:
        container["command"] = flags.command
    if flags.args is not None:
        container["args"] = flags.args
    if flags.working_dir is not None:
        container["workingDir"] = flags.working_dir
    _apply_env(container, flags)
    if flags.port:
        _apply_port(container, flags.port)
    if flags.concurrency_limit is not None:
        tspec["containerConcurrency"] = flags.concurrency_limit
    scale = []
    if flags.scale_min is not None:
        scale.append(f"autoscaling.knative.dev/min-scale={flags.scale_min}")
    if flags.scale_max is not None:
        scale.append(f"autoscaling.knative.dev/max-scale={flags.scale_max}")
    _annotation_map(tmeta, scale)
    _annotation_map(tmeta, flags.annotations)
    _annotation_map(svc["metadata"], flags.annotations)
    if flags.labels:
        svc["metadata"]["labels"] = _apply_map(svc["metadata"].get("labels") or {}, flags.labels, "--label")
        tmeta["labels"] = _apply_map(tmeta.get("labels") or {}, flags.labels, "--label")
    if flags.revision_name is not None:
        name = flags.revision_name.replace("{{.Service}}", service_name)
        if name:
            tmeta["name"] = name
        else:
            tmeta.pop("name", None)
    if flags.traffic or flags.tags or flags.untag:
        svc["spec"]["traffic"] = compute_traffic(svc["spec"].get("traffic") or [], flags)
    return svc


def _target_for(ref: str, existing: list[Obj]) -> Obj:
    """@latest, an existing tag, or a revision name → a fresh traffic target."""
    if ref == LATEST:
        return {"latestRevision": True}
    for t in existing:
        if t.get("tag") == ref:
            return {k: v for k, v in t.items() if k in ("revisionName", "latestRevision", "configurationName")}
    return {"revisionName": ref}


def _same_target(a: Obj, b: Obj) -> bool:
    if a.get("latestRevision") and b.get("latestRevision"):
        return True
    return bool(a.get("revisionName")) and a.get("revisionName") == b.get("revisionName")


def compute_traffic(existing: list[Obj], flags: ServiceFlags) -> list[Obj]:
    """kn semantics: --traffic replaces the split, --tag/--untag add or drop tags (tagged targets stay)."""
    targets = [dict(t) for t in existing] or [{"latestRevision": True, "percent": 100}]
    for tag in flags.untag:
        if not any(t.get("tag") == tag for t in targets):
            raise CLIError(f"tag {tag!r} does not exist, nothing to untag")
        targets = [t for t in targets if t.get("tag") != tag or t.get("percent")]
        for t in targets:
            if t.get("tag") == tag:
                t.pop("tag")
    for item in flags.tags:
        ref, sep, tag = item.partition("=")
        if not sep or not ref or not tag:
            raise CLIError(f"--tag must be REVISION=TAG or @latest=TAG, not {item!r}")
        target = _target_for(ref, [])
        match = next((t for t in targets if _same_target(t, target) and not t.get("tag")), None)
        if match is None:
            targets.append({**target, "tag": tag, "percent": 0})
        else:
            match["tag"] = tag
    if flags.traffic:
        wanted: list[tuple[str, int]] = []
        for item in flags.traffic:
            ref, sep, pct = item.rpartition("=")
            if not sep or not ref or not pct.rstrip("%").isdigit():
                raise CLIError(f"--traffic must be REVISION=PERCENT, TAG=PERCENT or @latest=PERCENT, not {item!r}")
            wanted.append((ref, int(pct.rstrip("%"))))
        new: list[Obj] = []
        for name, percent in wanted:
            tagged = next((t for t in targets if t.get("tag") == name), None)
            if tagged is not None:
                new.append({**tagged, "percent": percent})
            else:
                new.append({**_target_for(name, targets), "percent": percent})
        for t in targets:  # tagged targets not mentioned keep their tag at 0 %
            if t.get("tag") and not any(n.get("tag") == t["tag"] for n in new):
                new.append({**t, "percent": 0})
        targets = new
    return targets
