"""`wisp broker|trigger|event …`: kn-style eventing commands.

Brokers and Triggers are managed over the API. Events go to a broker's `status.address.url`;
the CLI connects to the API host on that URL's port and sends the URL's authority as `Host`,
because `broker-ingress.<domain>` usually does not resolve (see ARCHITECTURE §1).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError, api_base
from wisp.cli.state import STATE, NamespaceOpt
from wisp.eventing.cloudevents import CloudEvent, to_binary, to_structured

BROKER = kinds.lookup("brokers")
TRIGGER = kinds.lookup("triggers")

broker_app = typer.Typer(no_args_is_help=True, help="Manage brokers.")
trigger_app = typer.Typer(no_args_is_help=True, help="Manage triggers.")
event_app = typer.Typer(no_args_is_help=True, help="Send and watch CloudEvents.")

AllNsOpt = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="json or yaml.")]
BrokerOpt = Annotated[str, typer.Option("--broker", "-b", help="Broker name.")]
DlsOpt = Annotated[str | None, typer.Option("--dead-letter-sink", "--dls",
                                            help="ksvc:NAME, broker:NAME or a URL.")]
RetryOpt = Annotated[int | None, typer.Option("--retry", help="Retries after the first attempt.")]
BackoffPolicyOpt = Annotated[str | None, typer.Option("--backoff-policy", help="linear or exponential.")]
BackoffDelayOpt = Annotated[str | None, typer.Option("--backoff-delay", help="ISO 8601, e.g. PT0.2S.")]
TimeoutOpt = Annotated[str | None, typer.Option("--timeout", help="Per-attempt timeout, ISO 8601.")]


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
    app.add_typer(trigger_app, name="trigger")
    app.add_typer(event_app, name="event")


# -- shared helpers ----------------------------------------------------------------------------

def parse_sink(text: str) -> dict[str, Any]:
    """`ksvc:NAME`, `broker:NAME` or an absolute URL → a Knative Destination."""
    prefix, sep, name = text.partition(":")
    refs = {"ksvc": ("serving.knative.dev/v1", "Service"), "broker": ("eventing.knative.dev/v1", "Broker")}
    if sep and prefix in refs and not name.startswith("//"):
        api_version, kind = refs[prefix]
        return {"ref": {"apiVersion": api_version, "kind": kind, "name": name}}
    if "://" not in text:
        raise CLIError(f"sink {text!r}: expected ksvc:NAME, broker:NAME or an absolute URL")
    return {"uri": text}


def _delivery(dls: str | None, retry: int | None, policy: str | None, delay: str | None,
              timeout: str | None) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    if dls:
        out["deadLetterSink"] = parse_sink(dls)
    for key, value in (("retry", retry), ("backoffPolicy", policy), ("backoffDelay", delay),
                       ("timeout", timeout)):
        if value is not None:
            out[key] = value
    return out or None


def _sink_text(dest: dict[str, Any] | None) -> str:
    if not dest:
        return ""
    ref = dest.get("ref")
    if ref:
        prefix = {"Service": "ksvc", "Broker": "broker"}.get(ref.get("kind", ""), ref.get("kind", ""))
        return f"{prefix}:{ref.get('name', '')}" + (dest.get("uri") or "")
    return str(dest.get("uri", ""))


def _wait_ready(client: Client, kind: kinds.Kind, ns: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = client.get(kind, ns, name)
        cond = output.condition(obj)
        if cond.get("status") == "True":
            return obj
        if time.monotonic() > deadline:
            raise CLIError(f"{kind.singular} '{name}' is not ready after {timeout:.0f}s: "
                           f"{cond.get('reason', '')} {cond.get('message', '')}".rstrip())
        time.sleep(0.1)


def _describe(obj: dict[str, Any], lines: list[tuple[str, str]]) -> None:
    meta = obj["metadata"]
    rows = [("Name", meta["name"]), ("Namespace", meta["namespace"]),
            ("Age", output.age(meta.get("creationTimestamp"))), *lines]
    width = max(len(k) for k, _ in rows) + 2
    for key, value in rows:
        output.console.print(f"{key + ':':<{width}}{value}")
    output.console.print("\nConditions:")
    output.conditions_table(obj)


# -- broker ------------------------------------------------------------------------------------

@broker_app.command("create")
def broker_create(name: str, namespace: NamespaceOpt = "default", dls: DlsOpt = None, retry: RetryOpt = None,
                  backoff_policy: BackoffPolicyOpt = None, backoff_delay: BackoffDelayOpt = None,
                  timeout: TimeoutOpt = None,
                  wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True) -> None:
    """Create a broker (durable, backed by the configured event log)."""
    spec: dict[str, Any] = {}
    delivery = _delivery(dls, retry, backoff_policy, backoff_delay, timeout)
    if delivery:
        spec["delivery"] = delivery
    obj: dict[str, Any] = {"apiVersion": BROKER.api_version, "kind": "Broker", "metadata": {"name": name},
                           "spec": spec}
    client = Client(STATE.api)
    obj = client.create(BROKER, namespace, obj)
    if wait:
        obj = _wait_ready(client, BROKER, namespace, name, 30)
    url = ((obj.get("status") or {}).get("address") or {}).get("url", "")
    output.console.print(f"Broker '{name}' created in namespace '{namespace}'." + (f"\n{url}" if url else ""))


@broker_app.command("list")
def broker_list(namespace: NamespaceOpt = "default", all_namespaces: AllNsOpt = False) -> None:
    """List brokers with their address and readiness."""
    items = Client(STATE.api).list(BROKER, None if all_namespaces else namespace)
    if not items:
        output.err_console.print("No brokers found.")
        return
    rows = []
    for b in items:
        _, ready, reason = output.ready_summary(b)
        url = ((b.get("status") or {}).get("address") or {}).get("url", "")
        rows.append((b["metadata"]["namespace"], b["metadata"]["name"], url,
                     output.age(b["metadata"].get("creationTimestamp")), ready, reason))
    output.table(("NAMESPACE", "NAME", "URL", "AGE", "READY", "REASON"), rows)


@broker_app.command("describe")
def broker_describe(name: str, namespace: NamespaceOpt = "default", output_format: OutputOpt = "") -> None:
    """Show a broker: address, delivery defaults, conditions."""
    obj = Client(STATE.api).get(BROKER, namespace, name)
    if output_format:
        output.dump(obj, output_format)
        return
    st = obj.get("status") or {}
    delivery = (obj.get("spec") or {}).get("delivery") or {}
    _describe(obj, [("Address", (st.get("address") or {}).get("url", "")),
                    ("Delivery", json.dumps(delivery) if delivery else "(none)"),
                    ("Dead letter", st.get("deadLetterSinkUri", ""))])


@broker_app.command("delete")
def broker_delete(name: str, namespace: NamespaceOpt = "default") -> None:
    """Delete a broker and its stored events."""
    Client(STATE.api).delete(BROKER, namespace, name)
    output.console.print(f"Broker '{name}' deleted in namespace '{namespace}'.")


# -- trigger -----------------------------------------------------------------------------------

def _filters(filter_: list[str] | None, cesql: list[str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
    attrs: dict[str, str] = {}
    for item in filter_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--filter {item!r}: expected attribute=value")
        attrs[key] = value
    return attrs, [{"cesql": expr} for expr in cesql or []]


@trigger_app.command("create")
def trigger_create(
    name: str,
    broker: BrokerOpt = "default",
    sink: Annotated[str, typer.Option("--sink", "-s", help="ksvc:NAME, broker:NAME or a URL.")] = "",
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="attribute=value (repeatable).")] = None,
    cesql: Annotated[list[str] | None, typer.Option("--filters-cesql", help="CESQL expression.")] = None,
    namespace: NamespaceOpt = "default", dls: DlsOpt = None, retry: RetryOpt = None,
    backoff_policy: BackoffPolicyOpt = None, backoff_delay: BackoffDelayOpt = None, timeout: TimeoutOpt = None,
    ordered: Annotated[bool, typer.Option("--ordered", help="Deliver one event at a time, in order.")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = False,
) -> None:
    """Create a trigger that delivers a broker's matching events to a sink."""
    if not sink:
        raise CLIError("--sink is required")
    attrs, cesql_filters = _filters(filter_, cesql)
    spec: dict[str, Any] = {"broker": broker, "subscriber": parse_sink(sink)}
    if attrs:
        spec["filter"] = {"attributes": attrs}
    if cesql_filters:
        spec["filters"] = cesql_filters
    delivery = _delivery(dls, retry, backoff_policy, backoff_delay, timeout)
    if delivery:
        spec["delivery"] = delivery
    meta: dict[str, Any] = {"name": name}
    if ordered:
        meta["annotations"] = {"wisp.dev/delivery.order": "ordered"}
    client = Client(STATE.api)
    client.create(TRIGGER, namespace, {"apiVersion": TRIGGER.api_version, "kind": "Trigger", "metadata": meta,
                                       "spec": spec})
    if wait:
        _wait_ready(client, TRIGGER, namespace, name, 30)
    output.console.print(f"Trigger '{name}' created in namespace '{namespace}'.")


@trigger_app.command("list")
def trigger_list(namespace: NamespaceOpt = "default", all_namespaces: AllNsOpt = False) -> None:
    """List triggers with broker, sink and readiness."""
    items = Client(STATE.api).list(TRIGGER, None if all_namespaces else namespace)
    if not items:
        output.err_console.print("No triggers found.")
        return
    rows = []
    for t in items:
        spec = t.get("spec") or {}
        _, ready, reason = output.ready_summary(t)
        rows.append((t["metadata"]["namespace"], t["metadata"]["name"], spec.get("broker", ""),
                     _sink_text(spec.get("subscriber")), output.age(t["metadata"].get("creationTimestamp")),
                     ready, reason))
    output.table(("NAMESPACE", "NAME", "BROKER", "SINK", "AGE", "READY", "REASON"), rows)


@trigger_app.command("describe")
def trigger_describe(name: str, namespace: NamespaceOpt = "default", output_format: OutputOpt = "") -> None:
    """Show a trigger: broker, filter, sink, resolved URIs, conditions."""
    obj = Client(STATE.api).get(TRIGGER, namespace, name)
    if output_format:
        output.dump(obj, output_format)
        return
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    filters = spec.get("filters") or (spec.get("filter") or {}).get("attributes") or {}
    _describe(obj, [("Broker", spec.get("broker", "")), ("Filter", json.dumps(filters) if filters else "(all)"),
                    ("Sink", _sink_text(spec.get("subscriber"))), ("Subscriber URI", st.get("subscriberUri", "")),
                    ("Dead letter", st.get("deadLetterSinkUri", ""))])


@trigger_app.command("delete")
def trigger_delete(name: str, namespace: NamespaceOpt = "default") -> None:
    """Delete a trigger (its delivery cursor goes with it)."""
    Client(STATE.api).delete(TRIGGER, namespace, name)
    output.console.print(f"Trigger '{name}' deleted in namespace '{namespace}'.")


# -- event -------------------------------------------------------------------------------------

def ingress_target(address: str, api: str) -> tuple[str, str]:
    """(URL to connect to, Host header) for a broker address, via the API's host."""
    parts = urlsplit(address)
    api_host = urlsplit(api).hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return urlunsplit((parts.scheme, f"{api_host}:{port}", parts.path, "", "")), parts.netloc


def _broker_address(client: Client, namespace: str, broker: str) -> str:
    obj = client.get(BROKER, namespace, broker)
    url = ((obj.get("status") or {}).get("address") or {}).get("url")
    if not url:
        raise CLIError(f"broker '{broker}' has no address yet")
    return str(url)


def _parse_data(data: str | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return data


@event_app.command("send")
def event_send(
    broker: BrokerOpt = "default",
    type_: Annotated[str, typer.Option("--type", "-t", help="CloudEvent type.")] = "dev.wisp.cli",
    source: Annotated[str, typer.Option("--source", "-s", help="CloudEvent source.")] = "/wisp/cli",
    data: Annotated[str | None, typer.Option("--data", "-d", help="JSON (or text) payload.")] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="Event id (default: a UUID).")] = None,
    extension: Annotated[list[str] | None, typer.Option("--extension", "-e", help="name=value.")] = None,
    structured: Annotated[bool, typer.Option("--structured/--binary", help="HTTP content mode.")] = False,
    namespace: NamespaceOpt = "default",
) -> None:
    """Send one CloudEvent to a broker."""
    ext: dict[str, str] = {}
    for item in extension or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--extension {item!r}: expected name=value")
        ext[key] = value
    payload = _parse_data(data)
    content_type = None if payload is None else ("text/plain" if isinstance(payload, str) and
                                                 data is not None and not data.startswith('"')
                                                 else "application/json")
    event = CloudEvent.create(type_, source, payload, id=event_id, datacontenttype=content_type, extensions=ext)
    client = Client(STATE.api)
    url, host = ingress_target(_broker_address(client, namespace, broker), api_base(STATE.api))
    headers, body = to_structured(event) if structured else to_binary(event)
    try:
        resp = httpx.post(url, content=body, headers={**headers, "host": host}, timeout=30)
    except httpx.HTTPError as e:
        raise CLIError(f"could not reach the broker ingress at {url}: {e}") from e
    if resp.status_code >= 300:
        raise CLIError(f"broker answered {resp.status_code}: {resp.text.strip()}")
    output.console.print(f"Event '{event.id}' sent to broker '{broker}' ({resp.status_code}).")


@event_app.command("watch")
def event_watch(
    broker: BrokerOpt = "default",
    namespace: NamespaceOpt = "default",
    count: Annotated[int, typer.Option("--count", "-c", help="Stop after N events (0: never).")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="Stop after S seconds (0: never).")] = 0,
) -> None:
    """Print events as the broker accepts them, one JSON event per line."""
    client = Client(STATE.api)
    url, host = ingress_target(_broker_address(client, namespace, broker), api_base(STATE.api))
    deadline = time.monotonic() + timeout if timeout else None
    after, seen = -1, 0
    with httpx.Client(headers={"host": host}, timeout=40) as http:
        while deadline is None or time.monotonic() < deadline:
            wait = 10.0 if deadline is None else max(0.0, min(10.0, deadline - time.monotonic()))
            resp = http.get(url + "/events", params={"after": after, "timeout": wait})
            if resp.status_code != 200:
                raise CLIError(f"broker answered {resp.status_code}: {resp.text.strip()}")
            after = int(resp.headers.get("x-wisp-seq", after))
            for line in resp.text.splitlines():
                print(json.dumps(json.loads(line)["event"]), flush=True)
                seen += 1
                if count and seen >= count:
                    return


__all__ = ["broker_app", "event_app", "ingress_target", "parse_sink", "register", "trigger_app"]
