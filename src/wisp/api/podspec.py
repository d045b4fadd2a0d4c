"""Validation and defaulting of a RevisionSpec: the inlined PodSpec plus Knative's request limits.

Rules follow `pkg/apis/serving/k8s_validation.go` and `revision_defaults.go`: one serving
container (the only one that may declare a port), reserved env names/ports/paths that the platform
itself uses, probes with exactly one handler. wisp extension: a container may omit `image` when it
has a `command`; it then runs as a local process.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from wisp.api import meta
from wisp.api.fields import (
    DUPLICATE,
    FORBIDDEN,
    Errors,
    at,
    disallowed,
    generic,
    get_bool,
    get_int,
    get_list,
    get_map,
    get_str,
    got_both,
    got_neither,
    invalid,
    items_of,
    missing,
    out_of_bounds,
)
from wisp.config import Config

RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
# Sidecars get their own PORT-less environment, so only the K_* names are the platform's there.
RESERVED_SIDECAR_ENV = RESERVED_ENV - {"PORT"}
# queue-proxy, activator, metrics and profiling ports.
RESERVED_PORTS = frozenset({8012, 8013, 8022, 9090, 9091, 8008})
RESERVED_CONTAINER_NAMES = frozenset({"queue-proxy"})
RESERVED_PATHS = frozenset({"/", "/dev", "/dev/log"})
VALID_PORT_NAMES = ("", "h2c", "http1")
PROBE_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
VOLUME_SOURCES = ("secret", "configMap", "projected", "emptyDir", "persistentVolumeClaim", "ephemeral")
WRITABLE_SOURCES = ("emptyDir", "persistentVolumeClaim", "ephemeral")
ENV_SOURCES = ("secretKeyRef", "configMapKeyRef")
# Pod fields a wisp instance does not have, so references to them cannot be honoured.
UNSUPPORTED_ENV_SOURCES = ("fieldRef", "resourceFieldRef")
MAX_INT32 = 2**31 - 1
DEFAULT_PORT_NAME = "http"

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_RE = re.compile(
    # A registry is told apart from a repository path by a dot, a port or being `localhost`.
    rf"^(?:(?:localhost(?::[0-9]+)?|{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+(?::[0-9]+)?|{_DOMAIN_PART}:[0-9]+)/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def is_image_reference(image: str) -> bool:
    """Whether `image` parses as an OCI reference (`[registry/]repo[:tag][@digest]`)."""
    return len(image) <= 4096 and _IMAGE_RE.match(image) is not None


# -- validation ---------------------------------------------------------------------------------------

def validate_revision_spec(spec: Any, path: str, config: Config, errs: Errors) -> None:
    """Check a RevisionSpec found at `path` (e.g. `spec.template.spec`)."""
    if spec is None:
        errs.append(missing(path))
        return
    if not isinstance(spec, dict):
        errs.append(invalid(spec, path, "expected an object"))
        return
    volumes = _validate_volumes(spec, at(path, "volumes"), errs)
    containers = get_list(spec, "containers", at(path, "containers"), errs)
    if not containers:
        if containers is not None or "containers" not in spec:
            errs.append(missing(at(path, "containers")))
    else:
        _validate_containers(containers, at(path, "containers"), volumes, errs)
    init = get_list(spec, "initContainers", at(path, "initContainers"), errs) or []
    for i, c in items_of(init, at(path, "initContainers"), errs):
        _validate_init_container(c, at(path, "initContainers", i), volumes, errs)
    _check_volumes_mounted(spec, volumes, at(path, "volumes"), errs)
    _validate_concurrency(spec, at(path, "containerConcurrency"), config, errs)
    _validate_timeouts(spec, path, config, errs)
    account = get_str(spec, "serviceAccountName", at(path, "serviceAccountName"), errs)
    if account and not meta.is_dns1123_subdomain(account):
        errs.append(invalid(account, at(path, "serviceAccountName"),
                            "; ".join(meta.dns1123_subdomain_errors(account))))


def _validate_concurrency(spec: dict[str, Any], path: str, config: Config, errs: Errors) -> None:
    value = get_int(spec, "containerConcurrency", path, errs)
    lower = 0 if config.defaults.allow_container_concurrency_zero else 1
    upper = config.defaults.container_concurrency_max_limit
    if value is not None and not lower <= value <= upper:
        errs.append(out_of_bounds(value, lower, upper, path))


def _validate_timeouts(spec: dict[str, Any], path: str, config: Config, errs: Errors) -> None:
    """timeoutSeconds within 0..max; the narrower timeouts cannot exceed the request timeout."""
    most = config.defaults.max_revision_timeout_seconds
    timeout = get_int(spec, "timeoutSeconds", at(path, "timeoutSeconds"), errs)
    if timeout and not 0 <= timeout <= most:
        errs.append(out_of_bounds(timeout, 0, most, at(path, "timeoutSeconds")))
    limit = timeout if timeout and 0 < timeout <= most else most
    for name in ("responseStartTimeoutSeconds", "idleTimeoutSeconds"):
        value = get_int(spec, name, at(path, name), errs)
        if value is not None and not 0 <= value <= limit:
            errs.append(out_of_bounds(value, 0, limit, at(path, name)))


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    """`obj[name]` if it is a list, else empty (for walks that need not report type errors)."""
    value = obj.get(name)
    return value if isinstance(value, list) else []


def _port_entries(container: dict[str, Any]) -> list[Any]:
    return _list(container, "ports")


def _validate_containers(containers: list[Any], path: str, volumes: dict[str, tuple[int, dict[str, Any]]],
                         errs: Errors) -> None:
    entries = items_of(containers, path, errs)
    port_count = sum(len(_port_entries(c)) for _, c in entries)
    if port_count > 1:
        errs.append(generic("more than one container port is set (only a single port is allowed "
                            "across all containers)", f"{path}[*].ports"))
    elif port_count == 0 and len(entries) > 1:
        errs.append(missing(f"{path}[*].ports", "exactly one container must declare the serving port"))
    port_name = _serving_port_name(entries)
    seen: set[str] = set()
    for i, c in entries:
        name = c.get("name")
        if isinstance(name, str) and name:
            if name in seen:
                errs.append(generic(f'duplicate container name "{name}"', at(path, i, "name"), DUPLICATE))
            seen.add(name)
        serving = len(entries) == 1 or bool(_port_entries(c))
        _validate_container(c, at(path, i), volumes, port_name, serving, errs)


def _serving_port_name(entries: list[tuple[int, dict[str, Any]]]) -> str:
    """The serving port's name as probes may refer to it (unnamed ports are called "http")."""
    for _, c in entries:
        for port in _port_entries(c):
            if isinstance(port, dict) and isinstance(port.get("name"), str) and port["name"]:
                return str(port["name"])
            return DEFAULT_PORT_NAME
    return DEFAULT_PORT_NAME


def _validate_container(c: dict[str, Any], path: str, volumes: dict[str, tuple[int, dict[str, Any]]],
                        port_name: str, serving: bool, errs: Errors) -> None:
    if not c:
        errs.append(missing(path))
        return
    _validate_container_basics(c, path, volumes, RESERVED_ENV if serving else RESERVED_SIDECAR_ENV, errs)
    ports = get_list(c, "ports", at(path, "ports"), errs)
    if ports:
        _validate_serving_port(ports, at(path, "ports"), errs)
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        _validate_probe(c.get(probe), at(path, probe), port_name, probe == "readinessProbe", errs)
    lifecycle = get_map(c, "lifecycle", at(path, "lifecycle"), errs) or {}
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            errs.append(disallowed(at(path, "lifecycle", hook)))


def _validate_init_container(c: dict[str, Any], path: str,
                             volumes: dict[str, tuple[int, dict[str, Any]]], errs: Errors) -> None:
    for name in ("readinessProbe", "livenessProbe", "startupProbe", "lifecycle"):
        if c.get(name) is not None:
            errs.append(generic("field not allowed in an init container", at(path, name), FORBIDDEN))
    _validate_container_basics(c, path, volumes, RESERVED_SIDECAR_ENV, errs)


def _validate_container_basics(c: dict[str, Any], path: str, volumes: dict[str, tuple[int, dict[str, Any]]],
                               reserved_env: frozenset[str], errs: Errors) -> None:
    """What every container kind shares: name, code to run, environment and mounts."""
    name = get_str(c, "name", at(path, "name"), errs)
    if name in RESERVED_CONTAINER_NAMES:
        errs.append(generic(f'"{name}" is a reserved container name', at(path, "name")))
    elif name and not meta.is_dns1123_label(name):
        errs.append(invalid(name, at(path, "name"), "; ".join(meta.dns1123_label_errors(name))))
    _validate_code(c, path, errs)
    env = get_list(c, "env", at(path, "env"), errs) or []
    _validate_env(env, at(path, "env"), reserved_env, errs)
    env_from = get_list(c, "envFrom", at(path, "envFrom"), errs) or []
    _validate_env_from(env_from, at(path, "envFrom"), errs)
    mounts = get_list(c, "volumeMounts", at(path, "volumeMounts"), errs) or []
    _validate_mounts(mounts, at(path, "volumeMounts"), volumes, errs)


def _validate_code(c: dict[str, Any], path: str, errs: Errors) -> None:
    """An image to run, or (wisp) a command to run as a local process."""
    image = get_str(c, "image", at(path, "image"), errs)
    command = get_list(c, "command", at(path, "command"), errs)
    for field in ("command", "args"):
        values = c.get(field)
        if isinstance(values, list):
            for i, arg in enumerate(values):
                if not isinstance(arg, str):
                    errs.append(invalid(arg, at(path, field, i), "expected a string"))
    get_str(c, "workingDir", at(path, "workingDir"), errs)
    if image:
        if not is_image_reference(image):
            errs.append(generic(f'Failed to parse image reference "{image}"', at(path, "image")))
    elif not command:
        errs.append(missing(at(path, "image"), "set image, or command to run a local process"))


def _validate_env(env: list[Any], path: str, reserved: frozenset[str], errs: Errors) -> None:
    for i, e in items_of(env, path, errs):
        name = get_str(e, "name", at(path, i, "name"), errs)
        if not name:
            errs.append(missing(at(path, i, "name")))
        elif name in reserved:
            errs.append(generic(f'"{name}" is a reserved environment variable', at(path, i, "name")))
        value = get_str(e, "value", at(path, i, "value"), errs)
        source = get_map(e, "valueFrom", at(path, i, "valueFrom"), errs)
        if source is None:
            continue
        if value:
            errs.append(generic("may not be specified when `value` is not empty",
                                at(path, i, "valueFrom"), FORBIDDEN))
        _validate_value_from(source, at(path, i, "valueFrom"), errs)


def _validate_value_from(source: dict[str, Any], path: str, errs: Errors) -> None:
    for name in UNSUPPORTED_ENV_SOURCES:
        if source.get(name) is not None:
            errs.append(disallowed(at(path, name)))
    present = [name for name in ENV_SOURCES if source.get(name) is not None]
    if len(present) > 1:
        errs.append(got_both(path, *present))
    elif not present and not any(source.get(n) is not None for n in UNSUPPORTED_ENV_SOURCES):
        errs.append(got_neither(path, *ENV_SOURCES))
    for name in present:
        ref = get_map(source, name, at(path, name), errs)
        if ref is not None:
            _require_strings(ref, at(path, name), ("name", "key"), errs)
            get_bool(ref, "optional", at(path, name, "optional"), errs)


def _require_strings(obj: dict[str, Any], path: str, names: tuple[str, ...], errs: Errors) -> None:
    for name in names:
        if not get_str(obj, name, at(path, name), errs):
            errs.append(missing(at(path, name)))


def _validate_env_from(env_from: list[Any], path: str, errs: Errors) -> None:
    for i, entry in items_of(env_from, path, errs):
        present = [n for n in ("configMapRef", "secretRef") if entry.get(n) is not None]
        if len(present) > 1:
            errs.append(got_both(at(path, i), *present))
        elif not present:
            errs.append(got_neither(at(path, i), "configMapRef", "secretRef"))
        for name in present:
            ref = get_map(entry, name, at(path, i, name), errs)
            if ref is not None:
                _require_strings(ref, at(path, i, name), ("name",), errs)
        get_str(entry, "prefix", at(path, i, "prefix"), errs)


def _validate_serving_port(ports: list[Any], path: str, errs: Errors) -> None:
    """The serving port: not one the platform uses, TCP, named for the protocol it speaks."""
    entries = items_of(ports, path, errs)
    if not entries:
        return
    i, port = entries[0]
    number = get_int(port, "containerPort", at(path, i, "containerPort"), errs)
    if number is not None:
        if number in RESERVED_PORTS:
            errs.append(invalid(f"{number} is a reserved port", at(path, i, "containerPort"),
                                f"{number} is a reserved port, please use a different value"))
        if not 0 <= number <= 65535:
            errs.append(out_of_bounds(number, 0, 65535, at(path, i, "containerPort")))
    protocol = get_str(port, "protocol", at(path, i, "protocol"), errs)
    if protocol not in (None, "", "TCP"):
        errs.append(invalid(protocol, at(path, i, "protocol")))
    name = get_str(port, "name", at(path, i, "name"), errs) or ""
    if name not in VALID_PORT_NAMES:
        errs.append(generic(f"Port name {name} is not allowed (Name must be empty, or one of: "
                            "'h2c', 'http1')", at(path, i, "name")))


def _validate_probe(probe: Any, path: str, port_name: str, readiness: bool, errs: Errors) -> None:
    if probe is None:
        return
    if not isinstance(probe, dict):
        errs.append(invalid(probe, path, "expected an object"))
        return
    handlers = [h for h in PROBE_HANDLERS if probe.get(h) is not None]
    if not handlers:
        errs.append(got_neither(path, *PROBE_HANDLERS))
    elif len(handlers) > 1:
        errs.append(got_both(path, *handlers))
    for handler in ("httpGet", "tcpSocket"):
        action = get_map(probe, handler, at(path, handler), errs) or {}
        port = action.get("port")
        if isinstance(port, str) and port and port != port_name:
            errs.append(invalid(port, at(path, handler, "port"), "Probe port must match container port"))
    if readiness:
        _validate_readiness_timing(probe, path, errs)


def _validate_readiness_timing(probe: dict[str, Any], path: str, errs: Errors) -> None:
    """periodSeconds 0 (the default) means Knative's aggressive probing, which has its own timing."""
    ints = {n: get_int(probe, n, at(path, n), errs) for n in (
        "periodSeconds", "initialDelaySeconds", "successThreshold", "timeoutSeconds", "failureThreshold")}
    for name, lower in (("periodSeconds", 0), ("initialDelaySeconds", 0), ("successThreshold", 1)):
        value = ints[name]
        if value is not None and value < lower:
            errs.append(out_of_bounds(value, lower, MAX_INT32, at(path, name)))
    if not ints["periodSeconds"]:
        for name in ("failureThreshold", "timeoutSeconds"):
            if ints[name]:
                errs.append(generic(f"{name} is disallowed when periodSeconds is zero", at(path, name),
                                    FORBIDDEN))
        return
    for name in ("timeoutSeconds", "failureThreshold"):
        value = ints[name]
        if value is not None and value < 1:
            errs.append(out_of_bounds(value, 1, MAX_INT32, at(path, name)))


def _clean_path(mount_path: str) -> str:
    """As Go's path.Clean, which (unlike posixpath.normpath) also folds a leading `//`."""
    clean = posixpath.normpath(mount_path)
    return "/" + clean.lstrip("/") if clean.startswith("/") else clean


def _validate_mounts(mounts: list[Any], path: str, volumes: dict[str, tuple[int, dict[str, Any]]],
                     errs: Errors) -> None:
    seen: set[str] = set()
    for i, mount in items_of(mounts, path, errs):
        name = get_str(mount, "name", at(path, i, "name"), errs)
        if name not in volumes:
            errs.append(generic("volumeMount has no matching volume", at(path, i, "name")))
        mount_path = get_str(mount, "mountPath", at(path, i, "mountPath"), errs)
        get_bool(mount, "readOnly", at(path, i, "readOnly"), errs)
        if not mount_path:
            errs.append(missing(at(path, i, "mountPath")))
            continue
        clean = _clean_path(mount_path)
        if clean in RESERVED_PATHS:
            errs.append(generic(f'mountPath "{clean}" is a reserved path', at(path, i, "mountPath")))
        elif not mount_path.startswith("/"):
            errs.append(invalid(mount_path, at(path, i, "mountPath"), "must be an absolute path"))
        elif clean in seen:
            errs.append(invalid(f'"{mount_path}" must be unique', at(path, i, "mountPath")))
        seen.add(clean)


def _validate_volumes(spec: dict[str, Any], path: str, errs: Errors) -> dict[str, tuple[int, dict[str, Any]]]:
    """Check each volume; returns them by name with their index."""
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, vol in items_of(get_list(spec, "volumes", path, errs) or [], path, errs):
        name = get_str(vol, "name", at(path, i, "name"), errs)
        if not name:
            errs.append(missing(at(path, i, "name")))
        elif not meta.is_dns1123_label(name):
            errs.append(invalid(name, at(path, i, "name"), "; ".join(meta.dns1123_label_errors(name))))
        elif name in out:
            errs.append(generic(f'duplicate volume name "{name}"', at(path, i, "name"), DUPLICATE))
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if len(sources) > 1:
            errs.append(got_both(at(path, i), *sources))
        elif not sources:
            errs.append(got_neither(at(path, i), *VOLUME_SOURCES))
        _validate_volume_source(vol, at(path, i), errs)
        if name and name not in out:
            out[name] = (i, vol)
    return out


def _validate_volume_source(vol: dict[str, Any], path: str, errs: Errors) -> None:
    for source, ref_field in (("secret", "secretName"), ("configMap", "name")):
        src = get_map(vol, source, at(path, source), errs)
        if src is not None:
            _require_strings(src, at(path, source), (ref_field,), errs)


def _check_volumes_mounted(spec: dict[str, Any], volumes: dict[str, tuple[int, dict[str, Any]]],
                           path: str, errs: Errors) -> None:
    """A volume nobody mounts is almost always a typo in a mount name."""
    mounted = {name for c in _list(spec, "containers") + _list(spec, "initContainers")
               if isinstance(c, dict)
               for mount in _list(c, "volumeMounts")
               if isinstance(mount, dict) and isinstance(name := mount.get("name"), str)}
    for name, (i, _) in volumes.items():
        if name not in mounted:
            errs.append(generic(f'volume with name "{name}" not mounted', at(path, i, "name")))


# -- defaulting ---------------------------------------------------------------------------------------

def default_revision_spec(spec: Any, config: Config) -> None:
    """Fill in Knative's defaults in place (the caller passes a copy). Idempotent."""
    if not isinstance(spec, dict):
        return
    d = config.defaults
    timeout = spec.get("timeoutSeconds")
    if timeout is None or timeout == 0:
        spec["timeoutSeconds"] = timeout = d.revision_timeout_seconds
    if spec.get("containerConcurrency") is None:
        spec["containerConcurrency"] = d.container_concurrency
    start = d.revision_response_start_timeout_seconds
    unset = spec.get("responseStartTimeoutSeconds") is None
    if unset and start and isinstance(timeout, int) and start < timeout:
        spec["responseStartTimeoutSeconds"] = start
    if spec.get("idleTimeoutSeconds") is None and d.revision_idle_timeout_seconds:
        spec["idleTimeoutSeconds"] = d.revision_idle_timeout_seconds
    spec.setdefault("enableServiceLinks", False)
    containers = spec.get("containers")
    if not isinstance(containers, list):
        return
    writable = _writable_volume_names(spec)
    for idx, c in enumerate(containers):
        if not isinstance(c, dict):
            continue
        if not c.get("name"):
            template = d.container_name_template
            c["name"] = template if len(containers) == 1 else f"{template}-{idx}"
        if len(containers) == 1 or _port_entries(c):
            _default_probe(c)
        _force_read_only(c, writable)


def _default_probe(c: dict[str, Any]) -> None:
    """The serving container is probed by TCP connect unless the user says otherwise."""
    probe = c.get("readinessProbe")
    if probe is None:
        probe = c["readinessProbe"] = {}
    if not isinstance(probe, dict):
        return
    if all(probe.get(h) is None for h in PROBE_HANDLERS):
        probe["tcpSocket"] = {"port": 0}
    if not probe.get("successThreshold"):
        probe["successThreshold"] = 1


def _writable_volume_names(spec: dict[str, Any]) -> set[str]:
    volumes = spec.get("volumes")
    return {v["name"] for v in volumes if isinstance(v, dict) and isinstance(v.get("name"), str)
            and any(v.get(s) is not None for s in WRITABLE_SOURCES)} if isinstance(volumes, list) else set()


def _force_read_only(c: dict[str, Any], writable: set[str]) -> None:
    """Secrets, config maps and projections are mounted read-only whatever the mount says."""
    mounts = c.get("volumeMounts")
    for mount in mounts if isinstance(mounts, list) else []:
        if isinstance(mount, dict) and mount.get("name") not in writable:
            mount["readOnly"] = True
