"""Revision → InstanceSpec: command, env (Secrets/ConfigMaps), image snapshot and probe, resolved.

Everything that can fail here is the user's configuration (a missing Secret, an image that is not
in the store), so failures are `SpecError`s carrying the Knative-style reason the Revision shows.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wisp.api import kinds
from wisp.build import BuildError, ImageStore
from wisp.runtime.base import InstanceSpec, ProbeSpec
from wisp.store import Store

Obj = dict[str, Any]
SECRET = kinds.lookup("secrets")
CONFIGMAP = kinds.lookup("configmaps")
LOCAL_REGISTRY = "wisp.local"
DEFAULT_PORT = 8080


class SpecError(Exception):
    """The revision cannot be started as configured; `reason` goes into its conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ResolvedImage:
    digest: str  # sha256:…
    pinned: str  # name@sha256:…, what status.containerStatuses[].imageDigest shows
    rootfs: Path
    config: Obj


def store_ref(image: str) -> str:
    """`wisp.local/ns/app:tag` (or a bare `ns/app:tag`) → the name the image store knows."""
    for prefix in (f"{LOCAL_REGISTRY}/", "localhost/"):
        if image.startswith(prefix):
            return image[len(prefix):]
    return image


def resolve_image(images: ImageStore, image: str, pinned: str | None) -> ResolvedImage:
    """The image's digest (the pinned one if the Revision already recorded it) and its snapshot."""
    try:
        digest = pinned.rpartition("@")[2] if pinned else images.resolve(store_ref(image))
        config = images.image_config(digest)
        rootfs = images.unpack(digest)
    except BuildError as exc:
        raise SpecError("ContainerMissing", f'Unable to fetch image "{image}": {exc}. The process runtime '
                        "runs images from wisp's own store (push with `wisp service create --source DIR`), "
                        "or set a command without an image.") from None
    name = image.rpartition("@")[0] or image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return ResolvedImage(digest, f"{name}@{digest}", rootfs, config)


def prefetch_image(images: ImageStore, rev: Obj) -> None:
    """Resolve and unpack the revision's image ahead of `build_spec` (slow file I/O, no store access,
    so it may run in a worker thread while `build_spec` itself stays on the event loop's thread)."""
    container = ((rev.get("spec") or {}).get("containers") or [{}])[0]
    if container.get("image"):
        statuses = (rev.get("status") or {}).get("containerStatuses") or []
        resolve_image(images, container["image"], statuses[0].get("imageDigest") if statuses else None)


def _lookup(store: Store, kind: kinds.Kind, ns: str, name: str, optional: bool) -> Obj | None:
    obj = store.find(kind, ns, name)
    if obj is None and not optional:
        raise SpecError("CreateContainerConfigError", f'{kind.singular} "{name}" not found')
    return obj


def _values(kind: kinds.Kind, obj: Obj) -> dict[str, str]:
    if kind == SECRET:
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def _value_from(store: Store, ns: str, source: Obj) -> str | None:
    for key, kind in (("secretKeyRef", SECRET), ("configMapKeyRef", CONFIGMAP)):
        ref = source.get(key)
        if ref:
            optional = bool(ref.get("optional"))
            obj = _lookup(store, kind, ns, ref.get("name", ""), optional)
            values = _values(kind, obj) if obj else {}
            if ref.get("key") not in values:
                if optional:
                    return None
                raise SpecError("CreateContainerConfigError",
                                f'couldn\'t find key {ref.get("key")} in {kind.kind} {ns}/{ref.get("name")}')
            return values[ref["key"]]
    return None


def resolve_env(store: Store, ns: str, container: Obj, image_env: list[str]) -> dict[str, str]:
    """Image env, then envFrom, then env (later wins), with Secret and ConfigMap values filled in."""
    env = dict(item.split("=", 1) for item in image_env if "=" in item)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for key, kind in (("configMapRef", CONFIGMAP), ("secretRef", SECRET)):
            ref = source.get(key)
            if ref:
                obj = _lookup(store, kind, ns, ref.get("name", ""), bool(ref.get("optional")))
                env.update({prefix + k: v for k, v in (_values(kind, obj) if obj else {}).items()})
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = str(item.get("value", ""))
        else:
            value = _value_from(store, ns, item["valueFrom"])
            if value is not None:
                env[item["name"]] = value
    return env


def probe_spec(container: Obj) -> ProbeSpec:
    """The container's readiness probe in runtime terms; the serving port maps to the instance's PORT."""
    probe = container.get("readinessProbe") or {}
    ports = container.get("ports") or [{}]
    serving_port = int(ports[0].get("containerPort") or DEFAULT_PORT)
    timing = {
        "period_seconds": float(probe.get("periodSeconds") or 0),
        "timeout_seconds": float(probe.get("timeoutSeconds") or 1),
        "success_threshold": int(probe.get("successThreshold") or 1),
        "failure_threshold": int(probe.get("failureThreshold") or 3),
        "initial_delay_seconds": float(probe.get("initialDelaySeconds") or 0),
    }

    def port_of(spec: Obj) -> int:
        port = spec.get("port") or 0
        return 0 if port in (0, serving_port, str(serving_port)) or isinstance(port, str) else int(port)

    if "httpGet" in probe:
        get = probe["httpGet"]
        headers = tuple((h.get("name", ""), h.get("value", "")) for h in get.get("httpHeaders") or [])
        return ProbeSpec("http", path=get.get("path") or "/", port=port_of(get),
                         scheme=(get.get("scheme") or "HTTP").lower(),  # type: ignore[arg-type]
                         headers=headers, **timing)  # type: ignore[arg-type]
    if "exec" in probe:
        return ProbeSpec("exec", command=tuple(probe["exec"].get("command") or ()), **timing)  # type: ignore[arg-type]
    if "tcpSocket" in probe:
        return ProbeSpec("tcp", port=port_of(probe["tcpSocket"]), **timing)  # type: ignore[arg-type]
    return ProbeSpec("tcp", **timing)  # type: ignore[arg-type]


def _sink_binding_env(store: Store, ns: str, service: str) -> dict[str, str]:
    """K_SINK/K_CE_OVERRIDES from SinkBindings whose subject is this Service (eventing hook)."""
    from wisp.eventing.sinkbinding import binding_env  # eventing sits beside controllers; import late

    return binding_env(store, ns, service)


def build_spec(store: Store, images: ImageStore, rev: Obj, *, grace: float) -> tuple[InstanceSpec, str]:
    """The InstanceSpec to run `rev` with, and the pinned image digest ('' without an image)."""
    meta, spec = rev["metadata"], rev.get("spec") or {}
    container = (spec.get("containers") or [{}])[0]
    labels = meta.get("labels") or {}
    image_cfg: Obj = {}
    rootfs: Path | None = None
    pinned = ""
    if container.get("image"):
        statuses = (rev.get("status") or {}).get("containerStatuses") or []
        recorded = statuses[0].get("imageDigest") if statuses else None
        resolved = resolve_image(images, container["image"], recorded)
        image_cfg, rootfs, pinned = resolved.config.get("config") or {}, resolved.rootfs, resolved.pinned
    command = list(container.get("command") or image_cfg.get("Entrypoint") or [])
    args = list(container.get("args") if "args" in container else
                ([] if container.get("command") else image_cfg.get("Cmd") or []))
    if not command and args:
        command, args = args[:1], args[1:]
    if not command:
        raise SpecError("ContainerMissing", "the container has no command: set one, or use an image with an "
                        "entrypoint")
    working_dir = container.get("workingDir") or image_cfg.get("WorkingDir") or None
    env = resolve_env(store, meta["namespace"], container, list(image_cfg.get("Env") or []))
    env.update(_sink_binding_env(store, meta["namespace"], labels.get("serving.knative.dev/service", "")))
    return InstanceSpec(
        namespace=meta["namespace"], revision=meta["name"], command=command, args=args, env=env,
        service=labels.get("serving.knative.dev/service", ""),
        configuration=labels.get("serving.knative.dev/configuration", ""),
        working_dir=working_dir, rootfs=rootfs, readiness=probe_spec(container), termination_grace=grace,
    ), pinned
