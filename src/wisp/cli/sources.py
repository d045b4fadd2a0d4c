"""`wisp source ping|apiserver|binding|container …`: kn-style commands for event sources.

Every source kind has `create`, `list`, `describe` and `delete`; `wisp apply -f` works for all of
them too. Sinks are written as for triggers: `ksvc:NAME`, `broker:NAME`, `channel:NAME` or a URL.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError
from wisp.cli.eventing import AllNsOpt, NamespaceOpt, OutputOpt
from wisp.cli.state import STATE

__all__ = ["parse_destination_text", "register"]

SOURCES = "sources.knative.dev/v1"
source_app = typer.Typer(no_args_is_help=True, help="Manage event sources.")
SinkOpt = Annotated[str, typer.Option("--sink", "-s", help="ksvc:NAME, broker:NAME, channel:NAME or a URL.")]
CeOpt = Annotated[list[str] | None, typer.Option("--ce-override", help="key=value extension (repeatable).")]

_REFS = {"ksvc": ("serving.knative.dev/v1", "Service"), "broker": ("eventing.knative.dev/v1", "Broker"),
         "channel": ("messaging.knative.dev/v1", "Channel"), "imc": ("messaging.knative.dev/v1", "InMemoryChannel"),
         "sequence": ("flows.knative.dev/v1", "Sequence"), "parallel": ("flows.knative.dev/v1", "Parallel")}


def parse_destination_text(text: str) -> dict[str, Any]:
    """`ksvc:NAME`, `broker:NAME`, `channel:NAME`, `imc:NAME`, `sequence:NAME` or a URL → Destination."""
    prefix, sep, name = text.partition(":")
    if sep and prefix in _REFS and not name.startswith("//"):
        api_version, kind = _REFS[prefix]
        return {"ref": {"apiVersion": api_version, "kind": kind, "name": name}}
    if "://" not in text:
        raise CLIError(f"{text!r}: expected ksvc:NAME, broker:NAME, channel:NAME or an absolute URL")
    return {"uri": text}


def destination_text(dest: dict[str, Any] | None) -> str:
    if not dest:
        return ""
    ref = dest.get("ref")
    if ref:
        prefix = next((p for p, (_, k) in _REFS.items() if k == ref.get("kind")), ref.get("kind", ""))
        return f"{prefix}:{ref.get('name', '')}" + (dest.get("uri") or "")
    return str(dest.get("uri", ""))


def _overrides(items: list[str] | None) -> dict[str, Any] | None:
    ext: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--ce-override {item!r}: expected key=value")
        ext[key] = value
    return {"extensions": ext} if ext else None


def _create(kind_name: str, name: str, namespace: str, spec: dict[str, Any]) -> None:
    kind = kinds.lookup(kind_name)
    obj = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name}, "spec": spec}
    Client(STATE.api).create(kind, namespace, obj)
    output.console.print(f"{kind.kind} '{name}' created in namespace '{namespace}'.")


def list_kind(kind_name: str, namespace: str, all_namespaces: bool, extra: tuple[str, ...] = ("SINK",)) -> None:
    """A table of one kind: namespace, name, a destination column, age, readiness."""
    kind = kinds.lookup(kind_name)
    items = Client(STATE.api).list(kind, None if all_namespaces else namespace)
    if not items:
        output.err_console.print(f"No {kind.plural} found.")
        return
    rows = []
    for obj in items:
        _, ready, reason = output.ready_summary(obj)
        st = obj.get("status") or {}
        where = st.get("sinkUri") or (st.get("address") or {}).get("url", "")
        rows.append((obj["metadata"]["namespace"], obj["metadata"]["name"], where,
                     output.age(obj["metadata"].get("creationTimestamp")), ready, reason))
    output.table(("NAMESPACE", "NAME", *extra, "AGE", "READY", "REASON"), rows)


def describe_kind(kind_name: str, name: str, namespace: str, output_format: str) -> None:
    """Spec as JSON lines plus the conditions table (or the whole object with -o)."""
    obj = Client(STATE.api).get(kinds.lookup(kind_name), namespace, name)
    if output_format:
        output.dump(obj, output_format)
        return
    meta, st = obj["metadata"], obj.get("status") or {}
    rows = [("Name", meta["name"]), ("Namespace", meta["namespace"]),
            ("Age", output.age(meta.get("creationTimestamp")))]
    rows += [(k[:1].upper() + k[1:], json.dumps(v) if isinstance(v, dict | list) else str(v))
             for k, v in (obj.get("spec") or {}).items()]
    for key in ("sinkUri", "address"):
        if key in st:
            rows.append((key, json.dumps(st[key]) if isinstance(st[key], dict) else str(st[key])))
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        output.console.print(f"{key + ':':<{width}}{value}", markup=False)
    output.console.print("\nConditions:")
    output.conditions_table(obj)


def delete_kind(kind_name: str, name: str, namespace: str) -> None:
    kind = kinds.lookup(kind_name)
    Client(STATE.api).delete(kind, namespace, name)
    output.console.print(f"{kind.kind} '{name}' deleted in namespace '{namespace}'.")


def add_crud(app: typer.Typer, kind_name: str) -> None:
    """Register `list`, `describe` and `delete` for one kind on `app`."""

    @app.command("list")
    def list_cmd(namespace: NamespaceOpt = "default", all_namespaces: AllNsOpt = False) -> None:
        """List them with their sink or address and readiness."""
        list_kind(kind_name, namespace, all_namespaces)

    @app.command("describe")
    def describe_cmd(name: str, namespace: NamespaceOpt = "default", output_format: OutputOpt = "") -> None:
        """Show one: spec, resolved sink or address, conditions."""
        describe_kind(kind_name, name, namespace, output_format)

    @app.command("delete")
    def delete_cmd(name: str, namespace: NamespaceOpt = "default") -> None:
        """Delete one (objects it owns go with it)."""
        delete_kind(kind_name, name, namespace)


ping_app = typer.Typer(no_args_is_help=True, help="PingSource: an event on a cron schedule.")
apiserver_app = typer.Typer(no_args_is_help=True, help="ApiServerSource: events for resource changes.")
binding_app = typer.Typer(no_args_is_help=True, help="SinkBinding: give a Service K_SINK.")
container_app = typer.Typer(no_args_is_help=True, help="ContainerSource: run a program that sends events.")


@ping_app.command("create")
def ping_create(name: str, sink: SinkOpt = "",
                schedule: Annotated[str, typer.Option("--schedule", help="Cron, 5 or 6 fields, or @hourly…")]
                = "* * * * *",
                timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone.")] = None,
                data: Annotated[str | None, typer.Option("--data", "-d", help="Event data.")] = None,
                encoding: Annotated[str, typer.Option("--encoding", help="text or base64.")] = "text",
                content_type: Annotated[str | None, typer.Option("--content-type")] = None,
                ce_override: CeOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a PingSource."""
    if not sink:
        raise CLIError("--sink is required")
    spec: dict[str, Any] = {"schedule": schedule, "sink": parse_destination_text(sink)}
    if timezone:
        spec["timezone"] = timezone
    if data is not None:
        spec["dataBase64" if encoding == "base64" else "data"] = data
    if content_type:
        spec["contentType"] = content_type
    if overrides := _overrides(ce_override):
        spec["ceOverrides"] = overrides
    _create("pingsources", name, namespace, spec)


@apiserver_app.command("create")
def apiserver_create(name: str, sink: SinkOpt = "",
                     resource: Annotated[list[str] | None, typer.Option(
                         "--resource", help="Kind:apiVersion[:label=value,…] (repeatable).")] = None,
                     mode: Annotated[str, typer.Option("--mode", help="Reference or Resource.")] = "Reference",
                     ce_override: CeOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create an ApiServerSource."""
    if not sink or not resource:
        raise CLIError("--sink and at least one --resource are required")
    resources = []
    for item in resource:
        kind, _, rest = item.partition(":")
        api_version, _, labels = rest.rpartition(":") if rest.count(":") and "=" in rest.rsplit(":", 1)[1] \
            else (rest, "", "")
        res: dict[str, Any] = {"apiVersion": api_version or "v1", "kind": kind}
        if labels:
            res["selector"] = {"matchLabels": dict(p.split("=", 1) for p in labels.split(",") if "=" in p)}
        resources.append(res)
    spec: dict[str, Any] = {"mode": mode, "resources": resources, "sink": parse_destination_text(sink)}
    if overrides := _overrides(ce_override):
        spec["ceOverrides"] = overrides
    _create("apiserversources", name, namespace, spec)


@binding_app.command("create")
def binding_create(name: str, subject: Annotated[str, typer.Option(
                       "--subject", help="ksvc:NAME (the Service whose instances get K_SINK).")] = "",
                   sink: SinkOpt = "", ce_override: CeOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a SinkBinding (running instances pick it up when they restart)."""
    prefix, _, target = subject.partition(":")
    if prefix != "ksvc" or not target or not sink:
        raise CLIError("--subject ksvc:NAME and --sink are required")
    spec: dict[str, Any] = {"subject": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": target},
                            "sink": parse_destination_text(sink)}
    if overrides := _overrides(ce_override):
        spec["ceOverrides"] = overrides
    _create("sinkbindings", name, namespace, spec)


@container_app.command("create")
def container_create(name: str, command: Annotated[list[str], typer.Argument(help="Program and arguments.")],
                     sink: SinkOpt = "",
                     env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE.")] = None,
                     ce_override: CeOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a ContainerSource running COMMAND (use `--` before it), restarted with backoff."""
    if not sink:
        raise CLIError("--sink is required")
    container: dict[str, Any] = {"name": "source", "command": list(command)}
    if env:
        container["env"] = [{"name": k, "value": v} for k, _, v in (e.partition("=") for e in env)]
    spec: dict[str, Any] = {"template": {"spec": {"containers": [container]}}, "sink": parse_destination_text(sink)}
    if overrides := _overrides(ce_override):
        spec["ceOverrides"] = overrides
    _create("containersources", name, namespace, spec)


for _app, _kind in ((ping_app, "pingsources"), (apiserver_app, "apiserversources"),
                    (binding_app, "sinkbindings"), (container_app, "containersources")):
    add_crud(_app, _kind)
source_app.add_typer(ping_app, name="ping")
source_app.add_typer(apiserver_app, name="apiserver")
source_app.add_typer(binding_app, name="binding")
source_app.add_typer(container_app, name="container")


def register(app: typer.Typer) -> None:
    app.add_typer(source_app, name="source")
