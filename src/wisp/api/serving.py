"""Validation and defaulting of `serving.knative.dev` kinds beyond their shared metadata checks.

Service, Configuration, Revision, Route (v1) and DomainMapping (v1beta1), following
`pkg/apis/serving/v1/*_validation.go` and `*_defaults.go`. Each `validate_*` appends to `errs`
and expects the generic metadata checks to have run already; each `default_*` mutates the copy
it is given.
"""

from __future__ import annotations

import copy
from typing import Any

from wisp.api import autoscaling, meta
from wisp.api.diff import short_diff
from wisp.api.errors import FieldError
from wisp.api.fields import (
    Errors,
    at,
    disallowed,
    generic,
    get_list,
    get_map,
    get_str,
    invalid,
    invalid_key,
    key,
    missing,
)
from wisp.api.objectmeta import NameRule, check_name, string_map, validate_annotations, validate_labels
from wisp.api.podspec import default_revision_spec, validate_revision_spec
from wisp.api.traffic import default_traffic, validate_traffic
from wisp.config import Config

AUTOSCALING_PREFIX = "autoscaling.knative.dev/"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
CLUSTER_LOCAL = "cluster-local"
CLUSTER_LOCAL_DOMAIN = "svc.cluster.local"


def autoscaling_errors(annotations: Any, config: Config, path: str) -> list[FieldError]:
    """Check the `autoscaling.knative.dev/*` annotations (rules live in `wisp.api.autoscaling`).

    `path` is the metadata holding the annotations; errors land on `<path>.annotations.<key>`.
    """
    return autoscaling.validate_annotations(string_map(annotations), config, path)


# -- shared pieces --------------------------------------------------------------------------------------

def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


def _no_autoscaling_annotations(md: dict[str, Any], errs: Errors) -> None:
    """Autoscaling settings on a Service/Configuration itself would be silently ignored."""
    for name in string_map(md.get("annotations")):
        if name.startswith(AUTOSCALING_PREFIX):
            errs.append(invalid_key(name, "metadata.annotations", 'autoscaling annotations must be put '
                                    'under "spec.template.metadata.annotations" to work'))


def _check_visibility(md: dict[str, Any], errs: Errors) -> None:
    value = string_map(md.get("labels")).get(VISIBILITY_LABEL)
    if value is not None and value != CLUSTER_LOCAL:
        errs.append(invalid(value, key("metadata.labels", VISIBILITY_LABEL),
                            f'only "{CLUSTER_LOCAL}" is allowed'))


def _spec(obj: dict[str, Any], errs: Errors) -> dict[str, Any] | None:
    spec = get_map(obj, "spec", "spec", errs)
    if spec is None and "spec" not in obj:
        errs.append(missing("spec"))
    return spec


def validate_template(parent: dict[str, Any], path: str, parent_md: dict[str, Any], config: Config,
                      errs: Errors) -> None:
    """A RevisionTemplateSpec at `path`: its metadata, BYO revision name, annotations and spec."""
    template = get_map(parent, "template", path, errs)
    if template is None:
        if "template" not in parent:
            errs.append(missing(path))
        return
    tmd = get_map(template, "metadata", at(path, "metadata"), errs) or {}
    validate_labels(tmd.get("labels"), at(path, "metadata", "labels"), errs)
    validate_annotations(tmd.get("annotations"), at(path, "metadata", "annotations"), errs)
    errs.extend(autoscaling_errors(tmd.get("annotations"), config, at(path, "metadata")))
    _validate_revision_name(tmd, at(path, "metadata"), parent_md, errs)
    validate_revision_spec(template.get("spec"), at(path, "spec"), config, errs)


def _validate_revision_name(tmd: dict[str, Any], path: str, parent_md: dict[str, Any], errs: Errors) -> None:
    """A user-chosen revision name must be `<parent>-…`, so names of different parents never clash."""
    generate = get_str(tmd, "generateName", at(path, "generateName"), errs)
    if generate:
        check_name(generate, NameRule.DNS1035_LABEL, at(path, "generateName"), errs, prefix=True)
    name = get_str(tmd, "name", at(path, "name"), errs)
    if not name:
        return
    problems = meta.dns1035_label_errors(name)
    if problems:
        errs.append(invalid(name, at(path, "name"), f"not a DNS 1035 label: {'; '.join(problems)}"))
        return
    parent = parent_md.get("name") if isinstance(parent_md.get("name"), str) else ""
    if not parent and parent_md.get("generateName"):
        errs.append(disallowed(at(path, "name")))
    elif not name.startswith(f"{parent}-"):
        errs.append(invalid(f'"{name}" must have prefix "{parent}-"', at(path, "name")))


def _defaulted_template(template: dict[str, Any], config: Config) -> dict[str, Any]:
    out = copy.deepcopy(template)
    default_revision_spec(out.get("spec"), config)
    return out


def _verify_name_change(spec: dict[str, Any], old: dict[str, Any], path: str, config: Config,
                        errs: Errors) -> None:
    """With a BYO revision name, any template change must come with a new name.

    Otherwise the change could not become a new Revision (the name is taken) and would be lost.
    Both sides are defaulted first so that merely omitting a default is not a change.
    """
    old_spec = old.get("spec")
    new_t = spec.get("template")
    old_t = old_spec.get("template") if isinstance(old_spec, dict) else None
    if not isinstance(new_t, dict) or not isinstance(old_t, dict):
        return
    name = (new_t.get("metadata") or {}).get("name") if isinstance(new_t.get("metadata"), dict) else None
    old_name = (old_t.get("metadata") or {}).get("name") if isinstance(old_t.get("metadata"), dict) else None
    if not name or name != old_name:
        return
    diff = short_diff(_defaulted_template(old_t, config), _defaulted_template(new_t, config))
    if diff:
        errs.append(generic(f"Saw the following changes without a name change (-old +new): {diff}",
                            at(path, "metadata", "name")))


# -- per kind: validation -------------------------------------------------------------------------------

def validate_service(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    md = _metadata(obj)
    _no_autoscaling_annotations(md, errs)
    _check_visibility(md, errs)
    spec = _spec(obj, errs)
    if spec is None:
        return
    validate_template(spec, "spec.template", md, config, errs)
    traffic = get_list(spec, "traffic", "spec.traffic", errs)
    if traffic:  # empty traffic is defaulted to 100% latest
        validate_traffic(traffic, "spec.traffic", errs, in_service=True)
    if old is not None:
        _verify_name_change(spec, old, "spec.template", config, errs)


def validate_configuration(obj: dict[str, Any], old: dict[str, Any] | None, config: Config,
                           errs: Errors) -> None:
    md = _metadata(obj)
    _no_autoscaling_annotations(md, errs)
    spec = _spec(obj, errs)
    if spec is None:
        return
    validate_template(spec, "spec.template", md, config, errs)
    if old is not None:
        _verify_name_change(spec, old, "spec.template", config, errs)


def validate_revision(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    """A Revision is a snapshot: its spec is checked once, then may never change."""
    errs.extend(autoscaling_errors(_metadata(obj).get("annotations"), config, "metadata"))
    if old is None:
        validate_revision_spec(obj.get("spec"), "spec", config, errs)
        return
    before, after = copy.deepcopy(old.get("spec")), copy.deepcopy(obj.get("spec"))
    default_revision_spec(before, config)
    default_revision_spec(after, config)
    diff = short_diff(before, after)
    if diff:
        errs.append(generic(f"Immutable fields changed (-old +new): {diff}", "spec"))


def validate_route(obj: dict[str, Any], old: dict[str, Any] | None, config: Config, errs: Errors) -> None:
    _check_visibility(_metadata(obj), errs)
    spec = get_map(obj, "spec", "spec", errs) or {}
    traffic = get_list(spec, "traffic", "spec.traffic", errs) or []
    validate_traffic(traffic, "spec.traffic", errs, in_service=False)


def validate_domain_mapping(obj: dict[str, Any], old: dict[str, Any] | None, config: Config,
                            errs: Errors) -> None:
    """The name is the custom domain; the ref must point into the mapping's own namespace."""
    md = _metadata(obj)
    name = md.get("name")
    if isinstance(name, str) and name and meta.is_dns1123_subdomain(name):
        if "." not in name:
            errs.append(generic(f'invalid name "{name}": should be a domain with at least two segments '
                                "separated by dots", "metadata.name"))
        if name.endswith(f".{CLUSTER_LOCAL_DOMAIN}"):
            errs.append(generic(f'invalid name "{name}": must not be a subdomain of cluster local '
                                f'domain "{CLUSTER_LOCAL_DOMAIN}"', "metadata.name"))
    spec = _spec(obj, errs)
    if spec is None:
        return
    ref = get_map(spec, "ref", "spec.ref", errs)
    if ref is None:
        errs.append(missing("spec.ref"))
    else:
        _validate_kreference(ref, "spec.ref", md.get("namespace"), errs)
    tls = get_map(spec, "tls", "spec.tls", errs)
    if tls is not None and not get_str(tls, "secretName", "spec.tls.secretName", errs):
        errs.append(missing("spec.tls.secretName"))


def _validate_kreference(ref: dict[str, Any], path: str, namespace: Any, errs: Errors) -> None:
    for field in ("apiVersion", "kind", "name"):
        if not get_str(ref, field, at(path, field), errs):
            errs.append(missing(at(path, field)))
    ns = get_str(ref, "namespace", at(path, "namespace"), errs)
    if ns and isinstance(namespace, str) and namespace and ns != namespace:
        errs.append(generic(f'mismatched namespaces: parent namespace "{namespace}" does not match '
                            f'ref "{ns}"', at(path, "namespace")))


# -- per kind: defaulting -------------------------------------------------------------------------------

def _default_template(spec: dict[str, Any], config: Config) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        default_revision_spec(template.get("spec"), config)


def default_service(obj: dict[str, Any], config: Config) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _default_template(spec, config)
        default_traffic(spec, configuration="")


def default_configuration(obj: dict[str, Any], config: Config) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _default_template(spec, config)


def default_revision(obj: dict[str, Any], config: Config) -> None:
    default_revision_spec(obj.get("spec"), config)


def default_route(obj: dict[str, Any], config: Config) -> None:
    """A Route its Service owns routes to that Service's Configuration (same name) by default."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    owner = meta.controller_of(obj)
    service = owner.get("name") if owner and owner.get("kind") == "Service" else None
    default_traffic(spec, configuration=service if isinstance(service, str) and service else None)
