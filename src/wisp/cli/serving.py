"""`wisp service|revision|route …`: the kn-style serving commands."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError
from wisp.cli.flags import ServiceFlags, apply_flags
from wisp.cli.state import STATE, NamespaceOpt
from wisp.controllers.instancespec import LOCAL_REGISTRY

SERVICE = kinds.lookup("ksvc")
REVISION = kinds.lookup("revisions")
ROUTE = kinds.lookup("routes")

service_app = typer.Typer(no_args_is_help=True, help="Manage Knative services.")
revision_app = typer.Typer(no_args_is_help=True, help="Manage revisions.")
route_app = typer.Typer(no_args_is_help=True, help="Inspect routes.")

Multi = list[str] | None
_CTX = {"allow_extra_args": True, "ignore_unknown_options": False}


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
    app.add_typer(revision_app, name="revision")
    app.add_typer(route_app, name="route")


def _flags(image: str | None, env: Multi, env_from: Multi, port: str | None, concurrency_limit: int | None,
           scale_min: int | None, scale_max: int | None, annotation: Multi, label: Multi,
           revision_name: str | None, traffic: Multi, tag: Multi, untag: Multi, cmd: str | None,
           arg: Multi, extra: list[str], working_dir: str | None) -> ServiceFlags:
    command = [cmd] if cmd else None
    args = list(arg) if arg else None
    if extra:  # `wisp service create NAME -- python app.py`
        command, args = [extra[0]], extra[1:]
    return ServiceFlags(image=image, command=command, args=args, env=env or [], env_from=env_from or [],
                        port=port, concurrency_limit=concurrency_limit, scale_min=scale_min,
                        scale_max=scale_max, annotations=annotation or [], labels=label or [],
                        revision_name=revision_name, traffic=traffic or [], tags=tag or [],
                        untag=untag or [], working_dir=working_dir)


def _pin_local_workdir(flags: ServiceFlags, source: Path | None) -> None:
    """A bare command runs on this machine: resolve its working directory where the user typed it.

    `wisp serve` usually runs elsewhere (another terminal, a service manager), so leaving it unset
    would run the app in the server's directory, not the user's.
    """
    if source is not None or flags.image or flags.command is None:
        return
    flags.working_dir = str(Path(flags.working_dir or ".").resolve())


def wait_ready(client: Client, ns: str, name: str, timeout: float, verb: str) -> dict[str, Any]:
    """Poll until the Service has caught up with its generation and is Ready (or failed)."""
    deadline = time.monotonic() + timeout
    with output.err_console.status(f"{verb} service '{name}' in namespace '{ns}'…") as status:
        while True:
            svc = client.get(SERVICE, ns, name)
            st = svc.get("status") or {}
            ready = output.condition(svc)
            current = st.get("observedGeneration") == svc["metadata"].get("generation")
            if current and ready.get("status") == "True":
                return svc
            if current and ready.get("status") == "False":
                raise CLIError(f"service '{name}' is not ready: {ready.get('reason', '')}: "
                               f"{ready.get('message', '')}".rstrip(": "))
            if time.monotonic() > deadline:
                raise CLIError(f"timed out after {timeout:.0f}s waiting for service '{name}' to be ready "
                               f"({ready.get('reason') or 'no reason yet'})")
            detail = ready.get("message") or ready.get("reason") or "waiting"
            status.update(f"{verb} service '{name}' in namespace '{ns}': {detail}")
            time.sleep(0.1)


def _finish(client: Client, svc: dict[str, Any], ns: str, wait: bool, wait_timeout: float, verb: str) -> None:
    name = svc["metadata"]["name"]
    if not wait:
        output.console.print(f"Service '{name}' {verb.lower()} in namespace '{ns}' (not waiting).")
        return
    start = time.monotonic()
    svc = wait_ready(client, ns, name, wait_timeout, verb)
    st = svc.get("status") or {}
    output.console.print(f"Service '{name}' is ready after {time.monotonic() - start:.1f}s "
                         f"(revision '{st.get('latestReadyRevisionName', '')}'). URL:")
    output.console.print(st.get("url", ""))


ImageOpt = Annotated[str | None, typer.Option("--image", help="Container image.")]
EnvOpt = Annotated[Multi, typer.Option("--env", "-e", help="KEY=VALUE, or KEY- to remove.")]
EnvFromOpt = Annotated[Multi, typer.Option("--env-from", help="config-map:NAME or secret:NAME (NAME- removes).")]
PortOpt = Annotated[str | None, typer.Option("--port", "-p", help="[NAME:]PORT the app listens on.")]
CCOpt = Annotated[int | None, typer.Option("--concurrency-limit", help="Hard limit of requests per instance.")]
MinOpt = Annotated[int | None, typer.Option("--scale-min", help="Minimum number of instances.")]
MaxOpt = Annotated[int | None, typer.Option("--scale-max", help="Maximum number of instances.")]
AnnOpt = Annotated[Multi, typer.Option("--annotation", "-a", help="KEY=VALUE, or KEY- to remove.")]
LabelOpt = Annotated[Multi, typer.Option("--label", "-l", help="KEY=VALUE, or KEY- to remove.")]
RevNameOpt = Annotated[str | None, typer.Option("--revision-name", help="Name of the new revision.")]
TrafficOpt = Annotated[Multi, typer.Option("--traffic", help="REVISION|TAG|@latest=PERCENT.")]
TagOpt = Annotated[Multi, typer.Option("--tag", help="REVISION|@latest=TAG.")]
UntagOpt = Annotated[Multi, typer.Option("--untag", help="TAG to remove.")]
CmdOpt = Annotated[str | None, typer.Option("--cmd", help="Command to run (overrides the image's).")]
ArgOpt = Annotated[Multi, typer.Option("--arg", help="Argument (repeatable).")]
WaitOpt = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the service is ready.")]
WaitTimeoutOpt = Annotated[float, typer.Option("--wait-timeout", help="Seconds to wait for readiness.")]
WorkdirOpt = Annotated[str | None, typer.Option("--workdir", help="Working directory of the app.")]
SourceOpt = Annotated[Path | None, typer.Option("--source", help="Folder to snapshot and run (with the command "
                                                   "after `--`).")]


def max_source_bytes() -> int:
    """The `--source` size limit: `WISP_MAX_SOURCE_BYTES` when set (small hosts, tests), else the default."""
    from wisp.build.pack import DEFAULT_MAX_BYTES

    raw = os.environ.get("WISP_MAX_SOURCE_BYTES", "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise CLIError(f"WISP_MAX_SOURCE_BYTES must be a positive number of bytes, not {raw!r}")
    return value


def _source_image(client: Client, ns: str, name: str, source: Path, flags: ServiceFlags) -> None:
    """Pack `source` into an image (command in its config), push it to wisp, and point the flags at it."""
    from wisp.build import BuildError, ImageStore, pack_directory, push_image

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wisp" / "images"
    limit = max_source_bytes()
    try:
        store = ImageStore(cache)
        ref = pack_directory(store, source, name=f"{ns}/{name}", tag="latest", command=flags.command,
                             args=flags.args, working_dir=flags.working_dir, max_bytes=limit)
        tag = "src-" + ref.digest.split(":", 1)[1][:12]
        store.tag(f"{ns}/{name}:{tag}", ref.digest)
        push_image(store, f"{ns}/{name}:{tag}", client.base)
    except BuildError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot pack {source}: {exc}") from None
    flags.image = f"{LOCAL_REGISTRY}/{ns}/{name}:{tag}"
    flags.command = flags.args = flags.working_dir = None
    flags.clear_command = True


@service_app.command("create", context_settings=_CTX)
def service_create(ctx: typer.Context, name: str, image: ImageOpt = None, env: EnvOpt = None,
                   env_from: EnvFromOpt = None, port: PortOpt = None, concurrency_limit: CCOpt = None,
                   scale_min: MinOpt = None, scale_max: MaxOpt = None, annotation: AnnOpt = None,
                   label: LabelOpt = None, revision_name: RevNameOpt = None, traffic: TrafficOpt = None,
                   tag: TagOpt = None, untag: UntagOpt = None, cmd: CmdOpt = None, arg: ArgOpt = None,
                   workdir: WorkdirOpt = None, source: SourceOpt = None,
                   force: Annotated[bool, typer.Option("--force", help="Replace the service if it exists.")] =
                   False,
                   namespace: NamespaceOpt = "default", wait: WaitOpt = True,
                   wait_timeout: WaitTimeoutOpt = 600.0) -> None:
    """Create a service: `wisp service create NAME --image IMG` or `… -- COMMAND ARGS`."""
    flags = _flags(image, env, env_from, port, concurrency_limit, scale_min, scale_max, annotation, label,
                   revision_name, traffic, tag, untag, cmd, arg, list(ctx.args), workdir)
    if not flags.image and not flags.command:
        raise CLIError("say what to run: --image IMAGE, or a command after `--`")
    client = Client(STATE.api)
    _pin_local_workdir(flags, source)
    if source is not None:
        client.get(kinds.lookup("namespaces"), "", namespace)
        _source_image(client, namespace, name, source, flags)
    base = {"apiVersion": SERVICE.api_version, "kind": SERVICE.kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": {"template": {"spec": {}}}}
    svc = apply_flags(base, flags, service_name=name)
    existing = client.find(SERVICE, namespace, name)
    if existing is not None and not force:
        raise CLIError(f"service '{name}' already exists in namespace '{namespace}' (use --force or "
                       "`wisp service update`)")
    if existing is not None:
        svc["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        created = client.replace(SERVICE, namespace, svc)
    else:
        created = client.create(SERVICE, namespace, svc)
    _finish(client, created, namespace, wait, wait_timeout, "Creating")


@service_app.command("update", context_settings=_CTX)
def service_update(ctx: typer.Context, name: str, image: ImageOpt = None, env: EnvOpt = None,
                   env_from: EnvFromOpt = None, port: PortOpt = None, concurrency_limit: CCOpt = None,
                   scale_min: MinOpt = None, scale_max: MaxOpt = None, annotation: AnnOpt = None,
                   label: LabelOpt = None, revision_name: RevNameOpt = None, traffic: TrafficOpt = None,
                   tag: TagOpt = None, untag: UntagOpt = None, cmd: CmdOpt = None, arg: ArgOpt = None,
                   workdir: WorkdirOpt = None, source: SourceOpt = None, namespace: NamespaceOpt = "default",
                   wait: WaitOpt = True, wait_timeout: WaitTimeoutOpt = 600.0) -> None:
    """Update a service; every change to the template makes a new revision."""
    flags = _flags(image, env, env_from, port, concurrency_limit, scale_min, scale_max, annotation, label,
                   revision_name, traffic, tag, untag, cmd, arg, list(ctx.args), workdir)
    client = Client(STATE.api)
    _pin_local_workdir(flags, source)
    if source is not None:
        if flags.command is None:
            raise CLIError("--source needs the command to run after `--`, e.g. -- python app.py")
        _source_image(client, namespace, name, source, flags)
    for attempt in range(5):
        current = client.get(SERVICE, namespace, name)
        svc = apply_flags(current, flags, service_name=name)
        svc.pop("status", None)
        try:
            updated = client.replace(SERVICE, namespace, svc)
            break
        except CLIError as exc:
            if "has been modified" not in exc.message or attempt == 4:
                raise
    _finish(client, updated, namespace, wait, wait_timeout, "Updating")


def scaling_state(rev: dict[str, Any]) -> str:
    """The revision's Active condition in words: Active, Activating (requests held) or Scaled to zero."""
    active = output.condition(rev, "Active")
    status, reason = active.get("status", ""), active.get("reason", "")
    if status == "True":
        return "Active"
    if status == "False":
        if not (rev.get("status") or {}).get("actualReplicas", 0):
            return "Scaled to zero"
        return f"Scaling to zero ({reason})" if reason else "Scaling to zero"
    return f"Activating ({reason})" if reason else "Activating"


def replicas(rev: dict[str, Any]) -> str:
    """`ready/desired` instances; `?` while the autoscaler has no decision yet."""
    st = rev.get("status") or {}
    desired = st.get("desiredReplicas")
    return f"{st.get('actualReplicas', 0)}/{'?' if desired is None else desired}"


def _served_replicas(svc: dict[str, Any], revisions: dict[tuple[str, str], dict[str, Any]]) -> str:
    """Ready/desired instances summed over the revisions the service sends traffic to."""
    ns = svc["metadata"]["namespace"]
    names = {t.get("revisionName", "") for t in (svc.get("status") or {}).get("traffic") or []}
    ready = desired = 0
    for name in names:
        st = (revisions.get((ns, name)) or {}).get("status") or {}
        ready += int(st.get("actualReplicas") or 0)
        desired += int(st.get("desiredReplicas") or 0)
    return f"{ready}/{desired}"


@service_app.command("list")
def service_list(namespace: NamespaceOpt = "default",
                 all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False) -> None:
    """List services with URL, latest revision, instances (ready/desired) and readiness."""
    client = Client(STATE.api)
    ns = None if all_namespaces else namespace
    items = client.list(SERVICE, ns)
    if not items:
        output.err_console.print("No services found.")
        return
    revisions = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in client.list(REVISION, ns)}
    rows = []
    for svc in items:
        st = svc.get("status") or {}
        conds, ready, reason = output.ready_summary(svc)
        rows.append((svc["metadata"]["namespace"], svc["metadata"]["name"], st.get("url", ""),
                     st.get("latestCreatedRevisionName", ""), _served_replicas(svc, revisions),
                     output.age(svc["metadata"].get("creationTimestamp")), conds, ready, reason))
    output.table(("NAMESPACE", "NAME", "URL", "LATEST", "REPLICAS", "AGE", "CONDITIONS", "READY", "REASON"),
                 rows)


@service_app.command("describe")
def service_describe(name: str, namespace: NamespaceOpt = "default",
                     output_format: Annotated[str, typer.Option("--output", "-o")] = "") -> None:
    """Show a service: URL, traffic, revisions and conditions."""
    client = Client(STATE.api)
    svc = client.get(SERVICE, namespace, name)
    if output_format:
        output.dump(svc, output_format)
        return
    st = svc.get("status") or {}
    meta = svc["metadata"]
    output.console.print(f"Name:       {name}\nNamespace:  {namespace}\nAge:        "
                         f"{output.age(meta.get('creationTimestamp'))}\nURL:        {st.get('url', '')}")
    revisions = {r["metadata"]["name"]: r for r in client.list(
        REVISION, namespace, f"serving.knative.dev/service={name}")}
    output.console.print("\nRevisions:")
    rows = []
    for t in st.get("traffic") or []:
        rev = revisions.get(t.get("revisionName", ""), {})
        rows.append((f"{t.get('percent', 0)}%", ("@latest " if t.get("latestRevision") else "")
                     + t.get("revisionName", ""), f"#{t['tag']}" if t.get("tag") else "", replicas(rev),
                     scaling_state(rev), output.condition(rev).get("status", "")))
    output.table(("TRAFFIC", "REVISION", "TAG", "REPLICAS", "SCALING", "READY"), rows)
    output.console.print("\nConditions:")
    output.conditions_table(svc)


@service_app.command("delete")
def service_delete(names: list[str], namespace: NamespaceOpt = "default") -> None:
    """Delete services (and their configurations, revisions and routes)."""
    _delete_each(SERVICE, names, namespace)


@revision_app.command("list")
def revision_list(service: Annotated[str | None, typer.Option("--service", "-s")] = None,
                  namespace: NamespaceOpt = "default") -> None:
    """List revisions, newest first, with their traffic share."""
    client = Client(STATE.api)
    selector = f"serving.knative.dev/service={service}" if service else ""
    items = client.list(REVISION, namespace, selector)
    items.sort(key=lambda r: (r["metadata"].get("labels", {}).get("serving.knative.dev/configuration", ""),
                              -int(r["metadata"].get("labels", {}).get(
                                  "serving.knative.dev/configurationGeneration", 0))))
    routes = {r["metadata"]["name"]: r for r in client.list(ROUTE, namespace)}
    rows = []
    for rev in items:
        labels = rev["metadata"].get("labels") or {}
        svc_name = labels.get("serving.knative.dev/service", "")
        share = [t for t in ((routes.get(svc_name) or {}).get("status") or {}).get("traffic") or []
                 if t.get("revisionName") == rev["metadata"]["name"]]
        conds, ready, reason = output.ready_summary(rev)
        rows.append((rev["metadata"]["name"], svc_name, f"{sum(t.get('percent', 0) for t in share)}%",
                     ",".join(t["tag"] for t in share if t.get("tag")),
                     labels.get("serving.knative.dev/configurationGeneration", ""),
                     output.age(rev["metadata"].get("creationTimestamp")), conds, ready, reason))
    output.table(("NAME", "SERVICE", "TRAFFIC", "TAGS", "GENERATION", "AGE", "CONDITIONS", "READY",
                  "REASON"), rows)


@revision_app.command("describe")
def revision_describe(name: str, namespace: NamespaceOpt = "default",
                      output_format: Annotated[str, typer.Option("--output", "-o")] = "") -> None:
    """Show a revision: image, digest, scale and conditions."""
    rev = Client(STATE.api).get(REVISION, namespace, name)
    if output_format:
        output.dump(rev, output_format)
        return
    container = ((rev.get("spec") or {}).get("containers") or [{}])[0]
    st = rev.get("status") or {}
    digest = ((st.get("containerStatuses") or [{}])[0]).get("imageDigest", "")
    output.console.print(
        f"Name:         {name}\nNamespace:    {namespace}\nAge:          "
        f"{output.age(rev['metadata'].get('creationTimestamp'))}\n"
        f"Image:        {container.get('image', '')} {digest}\n"
        f"Command:      {' '.join([*(container.get('command') or []), *(container.get('args') or [])])}\n"
        f"Replicas:     {replicas(rev)} (ready/desired), {scaling_state(rev)}\n"
        f"Concurrency:  {(rev.get('spec') or {}).get('containerConcurrency', 0)}")
    output.console.print("\nConditions:")
    output.conditions_table(rev)


@revision_app.command("delete")
def revision_delete(names: list[str], namespace: NamespaceOpt = "default") -> None:
    """Delete revisions."""
    _delete_each(REVISION, names, namespace)


def _delete_each(kind: kinds.Kind, names: list[str], namespace: str) -> None:
    client = Client(STATE.api)
    for name in names:
        client.delete(kind, namespace, name)
        output.console.print(f"{kind.kind} '{name}' deleted in namespace '{namespace}'.")


@route_app.command("list")
def route_list(namespace: NamespaceOpt = "default") -> None:
    """List routes with their URL and readiness."""
    items = Client(STATE.api).list(ROUTE, namespace)
    output.table(("NAME", "URL", "READY"), [(r["metadata"]["name"], (r.get("status") or {}).get("url", ""),
                                             output.condition(r).get("status", "")) for r in items])


@route_app.command("describe")
def route_describe(name: str, namespace: NamespaceOpt = "default",
                   output_format: Annotated[str, typer.Option("--output", "-o")] = "") -> None:
    """Show a route: URL, traffic targets and conditions."""
    route = Client(STATE.api).get(ROUTE, namespace, name)
    if output_format:
        output.dump(route, output_format)
        return
    st = route.get("status") or {}
    output.console.print(f"Name:       {name}\nNamespace:  {namespace}\nURL:        {st.get('url', '')}\n")
    output.table(("PERCENT", "REVISION", "TAG", "URL"),
                 [(f"{t.get('percent', 0)}%", t.get("revisionName", ""), t.get("tag", ""), t.get("url", ""))
                  for t in st.get("traffic") or []])
    output.console.print("\nConditions:")
    output.conditions_table(route)


@service_app.command("logs")
def service_logs(name: str, follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
                 revision: Annotated[str | None, typer.Option("--revision", "-r")] = None,
                 tail_lines: Annotated[int, typer.Option("--tail")] = 100,
                 namespace: NamespaceOpt = "default") -> None:
    """Print (and with -f, follow) the logs of a service's instances."""
    client = Client(STATE.api)
    if revision is None:
        svc = client.get(SERVICE, namespace, name)
        revision = (svc.get("status") or {}).get("latestCreatedRevisionName")
        if not revision:
            raise CLIError(f"service '{name}' has no revision yet")
    path = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions/{revision}/log"
    params = {"tailLines": str(tail_lines), "follow": "true" if follow else "false"}
    try:
        for chunk in client.stream_text(path, params):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


@service_app.command("invoke")
def service_invoke(name: str, tag: Annotated[str | None, typer.Option("--tag")] = None,
                   path: Annotated[str, typer.Option("--path")] = "/",
                   data: Annotated[str | None, typer.Option("--data", "-d", help="Request body (POST).")] = None,
                   header: Annotated[Multi, typer.Option("--header", "-H", help="NAME:VALUE")] = None,
                   namespace: NamespaceOpt = "default",
                   timeout: Annotated[float, typer.Option("--timeout")] = 60.0) -> None:
    """Call a service through the ingress (sets the Host header for you) and print the response body."""
    import httpx

    client = Client(STATE.api)
    svc = client.get(SERVICE, namespace, name)
    status = svc.get("status") or {}
    url = status.get("url", "")
    if tag:
        url = next((t.get("url", "") for t in status.get("traffic") or [] if t.get("tag") == tag), "")
        if not url:
            raise CLIError(f"service '{name}' has no tag '{tag}'")
    if not url:
        raise CLIError(f"service '{name}' has no URL yet: is it ready? (wisp service describe {name})")
    target = httpx.URL(url)
    headers = {"Host": target.host}
    for item in header or []:
        key, sep, value = item.partition(":")
        if not sep:
            raise CLIError(f"--header must be NAME:VALUE, not {item!r}")
        headers[key.strip()] = value.strip()
    connect = target.copy_with(host="127.0.0.1", path=path)
    try:
        resp = httpx.request("POST" if data is not None else "GET", str(connect), headers=headers,
                             content=data, timeout=timeout)
    except httpx.HTTPError as exc:
        raise CLIError(f"calling {url} failed: {exc}") from None
    sys.stdout.write(resp.text)
    if resp.status_code >= 400:
        raise CLIError(f"{url}{path} answered {resp.status_code}")
