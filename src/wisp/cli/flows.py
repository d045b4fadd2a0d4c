"""`wisp channel|subscription|sequence|parallel|eventtype …`: channels, flows and the event catalogue."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError
from wisp.cli.eventing import AllNsOpt, NamespaceOpt
from wisp.cli.sources import _create, add_crud, destination_text, parse_destination_text
from wisp.cli.state import STATE

__all__ = ["register"]

channel_app = typer.Typer(no_args_is_help=True, help="Manage channels (durable Channel or InMemoryChannel).")
subscription_app = typer.Typer(no_args_is_help=True, help="Manage subscriptions to channels.")
sequence_app = typer.Typer(no_args_is_help=True, help="Manage sequences (steps chained through channels).")
parallel_app = typer.Typer(no_args_is_help=True, help="Manage parallels (filtered branches).")
eventtype_app = typer.Typer(no_args_is_help=True, help="The catalogue of event types.")
ReplyOpt = Annotated[str | None, typer.Option("--reply", help="Where replies go (ksvc:, broker:, channel:, URL).")]


@channel_app.command("create")
def channel_create(name: str, in_memory: Annotated[bool, typer.Option(
                       "--in-memory", help="InMemoryChannel: fast, lost on restart.")] = False,
                   namespace: NamespaceOpt = "default") -> None:
    """Create a channel."""
    _create("inmemorychannels" if in_memory else "channels", name, namespace, {})


@subscription_app.command("create")
def subscription_create(name: str, channel: Annotated[str, typer.Option("--channel", help="channel:NAME or imc:NAME.")]
                        = "", sink: Annotated[str, typer.Option("--sink", "-s", help="The subscriber.")] = "",
                        reply: ReplyOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a subscription delivering a channel's events to a subscriber."""
    ref = parse_destination_text(channel if ":" in channel else f"channel:{channel}").get("ref")
    if not channel or not ref or not sink:
        raise CLIError("--channel and --sink are required")
    spec: dict[str, Any] = {"channel": ref, "subscriber": parse_destination_text(sink)}
    if reply:
        spec["reply"] = parse_destination_text(reply)
    _create("subscriptions", name, namespace, spec)


@sequence_app.command("create")
def sequence_create(name: str,
                    step: Annotated[list[str], typer.Option("--step", help="A step (repeatable, in order).")],
                    reply: ReplyOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a sequence; each step's reply is the next step's input."""
    spec: dict[str, Any] = {"steps": [parse_destination_text(s) for s in step]}
    if reply:
        spec["reply"] = parse_destination_text(reply)
    _create("sequences", name, namespace, spec)


@parallel_app.command("create")
def parallel_create(name: str, branch: Annotated[list[str], typer.Option(
                        "--branch", help="[FILTER=]SUBSCRIBER, e.g. ksvc:is-a=ksvc:handle-a (repeatable).")],
                    reply: ReplyOpt = None, namespace: NamespaceOpt = "default") -> None:
    """Create a parallel; every branch's filter sees every event."""
    branches = []
    for item in branch:
        flt, sep, sub = item.rpartition("=") if "=" in item else ("", "", item)
        b: dict[str, Any] = {"subscriber": parse_destination_text(sub)}
        if sep and flt:
            b["filter"] = parse_destination_text(flt)
        branches.append(b)
    spec: dict[str, Any] = {"branches": branches}
    if reply:
        spec["reply"] = parse_destination_text(reply)
    _create("parallels", name, namespace, spec)


@subscription_app.command("list")
def subscription_list(namespace: NamespaceOpt = "default", all_namespaces: AllNsOpt = False) -> None:
    """List subscriptions: channel, subscriber, reply, readiness."""
    items = Client(STATE.api).list(kinds.lookup("subscriptions"), None if all_namespaces else namespace)
    if not items:
        output.err_console.print("No subscriptions found.")
        return
    rows = []
    for s in items:
        spec = s.get("spec") or {}
        _, ready, reason = output.ready_summary(s)
        rows.append((s["metadata"]["namespace"], s["metadata"]["name"], (spec.get("channel") or {}).get("name", ""),
                     destination_text(spec.get("subscriber")), destination_text(spec.get("reply")), ready, reason))
    output.table(("NAMESPACE", "NAME", "CHANNEL", "SUBSCRIBER", "REPLY", "READY", "REASON"), rows)


@eventtype_app.command("list")
def eventtype_list(namespace: NamespaceOpt = "default", all_namespaces: AllNsOpt = False,
                   broker: Annotated[str | None, typer.Option("--broker", "-b", help="Only this broker's.")] = None
                   ) -> None:
    """List event types: type, source, the broker they flow through."""
    items = Client(STATE.api).list(kinds.lookup("eventtypes"), None if all_namespaces else namespace)
    rows = []
    for et in items:
        spec = et.get("spec") or {}
        attrs = {a.get("name"): a.get("value", "") for a in spec.get("attributes") or [] if isinstance(a, dict)}
        ref = (spec.get("reference") or {}).get("name", "")
        if broker and ref != broker:
            continue
        rows.append((et["metadata"]["namespace"], et["metadata"]["name"], attrs.get("type", ""),
                     attrs.get("source", ""), ref))
    if not rows:
        output.err_console.print("No event types found.")
        return
    output.table(("NAMESPACE", "NAME", "TYPE", "SOURCE", "REFERENCE"), rows)


for _app, _kind in ((channel_app, "channels"), (sequence_app, "sequences"), (parallel_app, "parallels")):
    add_crud(_app, _kind)


@subscription_app.command("describe")
def subscription_describe(name: str, namespace: NamespaceOpt = "default",
                          output_format: Annotated[str, typer.Option("--output", "-o")] = "") -> None:
    """Show a subscription with its resolved physicalSubscription."""
    from wisp.cli.sources import describe_kind

    describe_kind("subscriptions", name, namespace, output_format)


@subscription_app.command("delete")
def subscription_delete(name: str, namespace: NamespaceOpt = "default") -> None:
    """Delete a subscription."""
    from wisp.cli.sources import delete_kind

    delete_kind("subscriptions", name, namespace)


def register(app: typer.Typer) -> None:
    app.add_typer(channel_app, name="channel")
    app.add_typer(subscription_app, name="subscription")
    app.add_typer(sequence_app, name="sequence")
    app.add_typer(parallel_app, name="parallel")
    app.add_typer(eventtype_app, name="eventtype")
