"""Configuration → one Revision per template change (`<name>-00001`, …); status follows the latest.

The revision counter is the Configuration's `metadata.generation`, which the store bumps only when
the spec (the template) changes, so metadata-only edits never make a revision.
"""

from __future__ import annotations

import copy
import hashlib

from wisp.api.meta import FALSE, TRUE, UNKNOWN, get_condition, owner_reference, set_condition
from wisp.controllers.base import (
    CONFIGURATION,
    REVISION,
    Context,
    Key,
    Obj,
    is_owned_by,
    working_copy,
    write_status,
)
from wisp.controllers.gc import collectable

CONFIG_LABEL = "serving.knative.dev/configuration"
CONFIG_GEN_LABEL = "serving.knative.dev/configurationGeneration"
CONFIG_UID_LABEL = "serving.knative.dev/configurationUID"
SERVICE_LABEL = "serving.knative.dev/service"
SERVICE_UID_LABEL = "serving.knative.dev/serviceUID"
CREATOR = "serving.knative.dev/creator"
LAST_MODIFIER = "serving.knative.dev/lastModifier"
ROUTING_STATE = "serving.knative.dev/routingState"


def revision_name(cfg: Obj) -> str:
    """BYO name from the template, else `<cfg>-<generation:05d>`, hashed down to 63 characters."""
    template_name = ((cfg.get("spec") or {}).get("template") or {}).get("metadata", {}).get("name")
    if template_name:
        return str(template_name)
    name = f'{cfg["metadata"]["name"]}-{int(cfg["metadata"].get("generation", 1)):05d}'
    if len(name) > 63:
        digest = hashlib.md5(name.encode()).hexdigest()
        name = name[: 63 - 33] + "-" + digest
    return name


def desired_revision(cfg: Obj) -> Obj:
    meta, template = cfg["metadata"], (cfg.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    labels.update({
        CONFIG_LABEL: meta["name"],
        CONFIG_GEN_LABEL: str(meta.get("generation", 1)),
        CONFIG_UID_LABEL: meta.get("uid", ""),
        ROUTING_STATE: "pending",
    })
    cfg_labels = meta.get("labels") or {}
    if SERVICE_LABEL in cfg_labels:
        labels[SERVICE_LABEL] = cfg_labels[SERVICE_LABEL]
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Service"), None)
        if owner:
            labels[SERVICE_UID_LABEL] = owner.get("uid", "")
    annotations = dict(tmeta.get("annotations") or {})
    modifier = (meta.get("annotations") or {}).get(LAST_MODIFIER)
    if modifier:
        annotations[CREATOR] = modifier
    return {
        "apiVersion": REVISION.api_version, "kind": REVISION.kind,
        "metadata": {"name": revision_name(cfg), "namespace": meta["namespace"], "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner_reference(cfg)]},
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _revision_ready(rev: Obj) -> tuple[str, str, str]:
    cond = get_condition(rev, "Ready") or {}
    return cond.get("status", UNKNOWN), cond.get("reason", ""), cond.get("message", "")


def _update_status(ctx: Context, updated: Obj, latest: Obj) -> None:
    now, status = ctx.now(), updated.setdefault("status", {})
    name = latest["metadata"]["name"]
    status["latestCreatedRevisionName"] = name
    ready, reason, message = _revision_ready(latest)
    previous_ready = status.get("latestReadyRevisionName")
    if previous_ready and previous_ready != name and ctx.store.find(
            REVISION, updated["metadata"]["namespace"], previous_ready) is None:
        status.pop("latestReadyRevisionName", None)
        set_condition(updated, "Ready", FALSE, "RevisionDeleted",
                      f'Revision "{previous_ready}" was deleted.', now=now)
        return
    if ready == TRUE:
        status["latestReadyRevisionName"] = name
        set_condition(updated, "Ready", TRUE, now=now)
    elif ready == FALSE:
        set_condition(updated, "Ready", FALSE, "RevisionFailed",
                      f'Revision "{name}" failed with message: {message or reason}.', now=now)
    elif (get_condition(updated, "Ready") or {}).get("reason") != "RevisionDeleted":
        # RevisionDeleted stays until a new revision becomes ready.
        set_condition(updated, "Ready", UNKNOWN, "", "", now=now)


async def reconcile_configuration(ctx: Context, key: Key) -> None:
    ns, name = key
    cfg = ctx.store.find(CONFIGURATION, ns, name)
    if cfg is None:
        return
    updated = working_copy(cfg)
    want = desired_revision(cfg)
    rev = ctx.store.find(REVISION, ns, want["metadata"]["name"])
    if rev is None:
        rev = ctx.store.create(REVISION, want)
    elif not is_owned_by(rev, cfg):
        set_condition(updated, "Ready", FALSE, "NotOwned",
                      f'There is an existing Revision "{rev["metadata"]["name"]}" that we do not own.',
                      now=ctx.now())
        updated.setdefault("status", {})["observedGeneration"] = cfg["metadata"].get("generation", 1)
        write_status(ctx, CONFIGURATION, cfg, updated)
        return
    _update_status(ctx, updated, rev)
    updated["status"]["observedGeneration"] = cfg["metadata"].get("generation", 1)
    write_status(ctx, CONFIGURATION, cfg, updated)
    _collect_garbage(ctx, updated)


def _collect_garbage(ctx: Context, cfg: Obj) -> None:
    """Delete revisions config-gc says may go (never the latest created or latest ready one)."""
    status = cfg.get("status") or {}
    ns = cfg["metadata"]["namespace"]
    revisions = [r for r in ctx.store.list_owned(REVISION, cfg["metadata"]["uid"])
                 if r["metadata"]["name"] != status.get("latestCreatedRevisionName")]
    for rev_name in collectable(revisions, status.get("latestReadyRevisionName", ""), ctx.config.gc, ctx.now()):
        ctx.store.delete(REVISION, ns, rev_name)
