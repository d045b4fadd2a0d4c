"""The `wisp` command: serve the platform, and manage resources through its API."""

from __future__ import annotations

import base64
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError, kind_of
from wisp.cli.state import STATE, NamespaceOpt, OutputOpt

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="wisp: serverless on one machine, with Knative's resource model.")
namespace_app = typer.Typer(no_args_is_help=True, help="Manage namespaces.")
secret_app = typer.Typer(no_args_is_help=True, help="Manage secrets.")
configmap_app = typer.Typer(no_args_is_help=True, help="Manage config maps.")
app.add_typer(namespace_app, name="namespace")
app.add_typer(secret_app, name="secret")
app.add_typer(configmap_app, name="configmap")



@app.callback()
def _global(api: Annotated[str | None, typer.Option("--api", help="API address (or WISP_API).")] = None,
            ) -> None:
    STATE.api = api


@app.command()
def serve(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="State directory (WISP_DATA_DIR).")] = None,
    api_addr: Annotated[str, typer.Option("--api-addr", help="API listen address.")] = "127.0.0.1:9477",
    ingress_addr: Annotated[str, typer.Option("--ingress-addr", help="Ingress listen address.")] =
        "127.0.0.1:8080",
    config: Annotated[Path | None, typer.Option("--config", help="config.yaml path.")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Domain for service URLs.")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Run the platform (API, controllers, ingress, autoscaler, eventing) in this process."""
    from wisp.config import Config, ConfigError
    from wisp.platform import Settings, StartupError, run

    root = data_dir or Path(os.environ.get("WISP_DATA_DIR") or Path.home() / ".wisp")
    config_path = config or root / "config.yaml"
    if config is not None and not config.exists():
        raise CLIError(f"config file {config} does not exist")
    try:
        cfg = Config.load(config_path)
        if domain:
            cfg = cfg.with_overrides(network={"domain": domain})
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(Settings(data_dir=root, api_addr=api_addr, ingress_addr=ingress_addr, config_path=config_path,
                     config=cfg))
    except StartupError as exc:
        raise CLIError(str(exc)) from None


def _documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise CLIError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind", "").endswith("List") else [doc]
        for item in items or []:
            if not isinstance(item, dict) or not item.get("apiVersion") or not item.get("kind"):
                raise CLIError(f"{path}: every document needs apiVersion and kind")
            out.append(item)
    return out


def _kind_for(obj: dict[str, Any]) -> kinds.Kind:
    try:
        return kinds.by_api_version(obj["apiVersion"], obj["kind"])
    except Exception:
        raise CLIError(f'{obj["kind"]} ({obj["apiVersion"]}) is not a kind wisp serves') from None


@app.command()
def apply(filename: Annotated[str, typer.Option("--filename", "-f", help="File, or - for stdin.")],
          namespace: NamespaceOpt = "") -> None:
    """Create or update every resource in a (multi-document) YAML or JSON file."""
    client = Client(STATE.api)
    for obj in _documents(filename):
        kind = _kind_for(obj)
        meta = obj.setdefault("metadata", {})
        ns = namespace or meta.get("namespace") or "default"
        if kind.namespaced:
            meta["namespace"] = ns
        name = meta.get("name")
        label = f"{kind.singular}/{name or meta.get('generateName', '')}"
        current = client.find(kind, ns, name) if name else None
        if current is None:
            created = client.create(kind, ns, obj)
            output.console.print(f"{kind.singular}/{created['metadata']['name']} created")
        else:
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if kind.has_status:
                obj.pop("status", None)
            updated = client.replace(kind, ns, obj)
            same = updated["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
            output.console.print(f"{label} {'unchanged' if same else 'configured'}")


@app.command()
def get(kind: Annotated[str, typer.Argument(help="Resource type, e.g. ksvc, revisions, brokers.")],
        name: Annotated[str | None, typer.Argument()] = None,
        namespace: NamespaceOpt = "default",
        all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
        selector: Annotated[str, typer.Option("--selector", "-l")] = "",
        output_format: OutputOpt = "") -> None:
    """Show resources of any kind."""
    k = kind_of(kind)
    client = Client(STATE.api)
    if output_format and output_format not in ("yaml", "json"):
        raise CLIError(f"unknown output format {output_format!r}: use yaml or json")
    if name:
        obj = client.get(k, namespace, name)
        if output_format:
            output.dump(obj, output_format)
        else:
            _print_rows(k, [obj])
        return
    items = client.list(k, None if all_namespaces else namespace, selector)
    if output_format:
        output.dump({"apiVersion": "v1", "kind": "List", "items": items}, output_format)
    elif not items:
        output.err_console.print(f"No {k.plural} found in namespace {namespace}." if not all_namespaces
                                 else f"No {k.plural} found.")
    else:
        _print_rows(k, items, all_namespaces)


def _print_rows(k: kinds.Kind, items: list[dict[str, Any]], with_ns: bool = False) -> None:
    rows = []
    for obj in items:
        meta = obj["metadata"]
        _, ready, reason = output.ready_summary(obj)
        row = [meta.get("namespace", "")] if with_ns else []
        row += [meta["name"]]
        if k.has_status:
            row += [(obj.get("status") or {}).get("url", ""), ready, reason]
        row.append(output.age(meta.get("creationTimestamp")))
        rows.append(row)
    cols = (["NAMESPACE"] if with_ns else []) + ["NAME"]
    cols += ["URL", "READY", "REASON"] if k.has_status else []
    output.table([*cols, "AGE"], rows)


@app.command()
def delete(kind: Annotated[str | None, typer.Argument()] = None,
           names: Annotated[list[str] | None, typer.Argument()] = None,
           filename: Annotated[str | None, typer.Option("--filename", "-f")] = None,
           namespace: NamespaceOpt = "default") -> None:
    """Delete resources by kind and name, or every resource in a file."""
    client = Client(STATE.api)
    targets: list[tuple[kinds.Kind, str, str]] = []
    if filename:
        for obj in _documents(filename):
            meta = obj.get("metadata") or {}
            targets.append((_kind_for(obj), meta.get("namespace") or namespace, meta.get("name", "")))
    elif kind and names:
        targets = [(kind_of(kind), namespace, n) for n in names]
    else:
        raise CLIError("say what to delete: wisp delete KIND NAME… or wisp delete -f FILE")
    for k, ns, name in targets:
        client.delete(k, ns, name)
        output.console.print(f'{k.singular}/{name} deleted')


# ---- namespaces, secrets, config maps ---------------------------------------------------------


@namespace_app.command("create")
def namespace_create(name: str) -> None:
    """Create a namespace."""
    Client(STATE.api).create(kinds.lookup("namespaces"), "", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": name}})
    output.console.print(f"Namespace '{name}' created.")


@namespace_app.command("list")
def namespace_list() -> None:
    """List namespaces."""
    items = Client(STATE.api).list(kinds.lookup("namespaces"), None)
    output.table(("NAME", "AGE"), [(i["metadata"]["name"], output.age(i["metadata"].get("creationTimestamp")))
                                   for i in items])


@namespace_app.command("delete")
def namespace_delete(name: str) -> None:
    """Delete a namespace and everything in it."""
    Client(STATE.api).delete(kinds.lookup("namespaces"), "", name)
    output.console.print(f"Namespace '{name}' deleted.")


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"{what} must look like KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def _files(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, path = item.partition("=")
        path = path if sep else key
        key = key if sep else Path(path).name
        try:
            out[key] = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read {path}: {exc}") from None
    return out


LiteralOpt = Annotated[list[str] | None, typer.Option("--from-literal", help="KEY=VALUE (repeatable).")]
FileOpt = Annotated[list[str] | None, typer.Option("--from-file", help="[KEY=]PATH (repeatable).")]


@secret_app.command("create")
def secret_create(name: str, from_literal: LiteralOpt = None, from_file: FileOpt = None,
                  namespace: NamespaceOpt = "default") -> None:
    """Create a secret from literals and files."""
    values = {**_pairs(from_literal, "--from-literal"), **_files(from_file)}
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": namespace}, "data": data}
    Client(STATE.api).create(kinds.lookup("secrets"), namespace, obj)
    output.console.print(f"Secret '{name}' created in namespace '{namespace}'.")


@configmap_app.command("create")
def configmap_create(name: str, from_literal: LiteralOpt = None, from_file: FileOpt = None,
                     namespace: NamespaceOpt = "default") -> None:
    """Create a config map from literals and files."""
    data = {**_pairs(from_literal, "--from-literal"), **_files(from_file)}
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
           "data": data}
    Client(STATE.api).create(kinds.lookup("configmaps"), namespace, obj)
    output.console.print(f"ConfigMap '{name}' created in namespace '{namespace}'.")


def _register_subcommands() -> None:
    from wisp.cli import eventing, serving

    serving.register(app)
    eventing.register(app)
    from wisp.cli import flows, sources
    sources.register(app)
    flows.register(app)
    from wisp.cli import functions
    functions.register(app)


_register_subcommands()


def main() -> None:
    """Entry point: every failure is one readable line on stderr and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except CLIError as exc:
        output.err_console.print(f"[red]Error:[/red] {exc.message}")
        sys.exit(exc.code)
    except typer.Abort:
        output.err_console.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except (typer.BadParameter, typer.Exit) as exc:
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        raise
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        output.err_console.print(f"[red]Error:[/red] {exc}")
        sys.exit(1)
