"""`wisp func create|build|run|deploy|invoke|list|describe|delete`: the function workflow."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from wisp.api import kinds
from wisp.cli import output
from wisp.cli.client import Client, CLIError
from wisp.cli.state import STATE

SERVICE = kinds.lookup("ksvc")
FUNCTION_LABEL = "wisp.dev/function"
RUNTIME_ANNOTATION = "wisp.dev/runtime"
LOCAL_REGISTRY = "wisp.local"

func_app = typer.Typer(no_args_is_help=True, help="Create, build, run, deploy and invoke functions.")

PathOpt = Annotated[Path, typer.Option("--path", "-p", help="The function's project folder.")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: func.yaml's).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="Install dependencies from the wheel cache only.")]
WheelsOpt = Annotated[Path | None, typer.Option("--wheels", help="Wheel cache folder for offline installs.")]


def register(app: typer.Typer) -> None:
    app.add_typer(func_app, name="func")


def _fail(exc: Exception) -> CLIError:
    return CLIError(str(exc))


def _config(path: Path) -> Any:
    from wisp.functions import FunctionError, load_config

    try:
        return load_config(path)
    except FunctionError as exc:
        raise _fail(exc) from None


def _build(path: Path, offline: bool, wheels: Path | None, namespace: str | None = None) -> Any:
    from wisp.build import ImageStore
    from wisp.functions import FunctionError, build_function
    from wisp.functions.builder import default_cache_dir, default_wheel_dir

    cache = default_cache_dir()
    with output.err_console.status(f"Building function in {path}…"):
        try:
            result = build_function(path, ImageStore(cache / "images"), cache_dir=cache,
                                    wheels=wheels or default_wheel_dir(), offline=offline)
        except FunctionError as exc:
            raise _fail(exc) from None
    if namespace and namespace != result.config.namespace:
        result.config.namespace = namespace
    return result


@func_app.command("create")
def func_create(name: str,
                language: Annotated[str, typer.Option("--language", "-l", help="Language.")] = "python",
                template: Annotated[str, typer.Option("--template", "-t", help="http or cloudevents.")] = "http",
                path: Annotated[Path | None, typer.Option("--path", "-p", help="Folder (default: ./NAME).")] = None,
                namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default") -> None:
    """Write a new function project (handler, func.yaml, requirements.txt, a test)."""
    from wisp.functions import FunctionError, create_project

    target = path or Path(name)
    try:
        files = create_project(target, name, language, template, namespace)
    except FunctionError as exc:
        raise _fail(exc) from None
    output.console.print(f"Created {template} function '{name}' in {target}:")
    for file in files:
        output.console.print(f"  {file.relative_to(target)}")


@func_app.command("build")
def func_build(path: PathOpt = Path("."), offline: OfflineOpt = False, wheels: WheelsOpt = None) -> None:
    """Build the function into an OCI image (dependency layer + code layer); print its reference."""
    result = _build(path, offline, wheels)
    deps = "cached" if result.deps.cached else "installed"
    output.err_console.print(f"Dependencies {deps} (layer {result.deps.layer.digest[:19]}).")
    output.console.print(f"Built image {result.reference}")


@func_app.command("run")
def func_run(path: PathOpt = Path("."), port: Annotated[int, typer.Option("--port")] = 8080,
             reload: Annotated[bool, typer.Option("--reload/--no-reload", help="Restart on change.")] = True,
             offline: OfflineOpt = False, wheels: WheelsOpt = None) -> None:
    """Serve the function locally (no platform needed), restarting when its files change."""
    from wisp.functions import FunctionError, ensure_deps
    from wisp.functions.builder import default_cache_dir, default_wheel_dir
    from wisp.functions.runner import LocalRunner

    config = _config(path)
    try:
        _, deps, _ = ensure_deps(path.resolve(), default_cache_dir(), wheels=wheels or default_wheel_dir(),
                                 offline=offline)
    except FunctionError as exc:
        raise _fail(exc) from None
    runner = LocalRunner(path.resolve(), config, deps, port)
    runner.start()
    output.err_console.print(f"Function '{config.name}' running at http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    try:
        if reload:
            runner.watch(on_restart=lambda changed: output.err_console.print(
                f"Changed: {', '.join(changed[:5])}; restarting."))
        elif runner.proc is not None:
            runner.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()


def _service(config: Any, image: str, runtime: str) -> dict[str, Any]:
    annotations = {RUNTIME_ANNOTATION: runtime, **config.scale.annotations()}
    spec: dict[str, Any] = {"containers": [{"image": image}]}
    if config.scale.concurrency is not None:
        spec["containerConcurrency"] = config.scale.concurrency
    return {"apiVersion": SERVICE.api_version, "kind": SERVICE.kind,
            "metadata": {"name": config.name, "namespace": config.namespace,
                         "labels": {FUNCTION_LABEL: config.name}},
            "spec": {"template": {"metadata": {"annotations": annotations}, "spec": spec}}}


def _push(client: Client, result: Any) -> str:
    from wisp.build import BuildError, ImageStore, push_image
    from wisp.functions.builder import default_cache_dir

    name = f"{result.config.namespace}/{result.config.name}"
    tag = "fn-" + result.image.digest.split(":", 1)[1][:12]
    store = ImageStore(default_cache_dir() / "images")
    store.tag(f"{name}:{tag}", result.image.digest)
    try:
        push_image(store, f"{name}:{tag}", client.base)
    except BuildError as exc:
        raise _fail(exc) from None
    return f"{LOCAL_REGISTRY}/{name}:{tag}"


@func_app.command("deploy")
def func_deploy(path: PathOpt = Path("."), namespace: NamespaceOpt = None, offline: OfflineOpt = False,
                wheels: WheelsOpt = None,
                runtime: Annotated[str, typer.Option("--runtime", help="function or process.")] = "function",
                wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
                wait_timeout: Annotated[float, typer.Option("--wait-timeout")] = 300.0) -> None:
    """Build, push and create (or update) the function's Service; print its URL."""
    from wisp.cli.serving import wait_ready

    if runtime not in ("function", "process"):
        raise CLIError(f"--runtime must be function or process, not {runtime!r}")
    client = Client(STATE.api)
    result = _build(path, offline, wheels, namespace)
    config = result.config
    client.get(kinds.lookup("namespaces"), "", config.namespace)
    image = _push(client, result)
    output.err_console.print(f"Pushed {image}@{result.image.digest}")
    svc = _service(config, image, runtime)
    existing = client.find(SERVICE, config.namespace, config.name)
    if existing is None:
        svc = client.create(SERVICE, config.namespace, svc)
    else:
        existing["metadata"].setdefault("labels", {})[FUNCTION_LABEL] = config.name
        existing["spec"]["template"] = svc["spec"]["template"]
        existing.pop("status", None)
        svc = client.replace(SERVICE, config.namespace, existing)
    if not wait:
        output.console.print(f"Function '{config.name}' deployed (not waiting).")
        return
    start = time.monotonic()
    ready = wait_ready(client, config.namespace, config.name, wait_timeout, "Deploying")
    output.err_console.print(f"Function '{config.name}' is ready after {time.monotonic() - start:.1f}s.")
    output.console.print((ready.get("status") or {}).get("url", ""))


def _target_url(client: Client, name: str, namespace: str) -> tuple[str, dict[str, str]]:
    """Where to connect for a deployed function: the ingress on loopback, with its Host header."""
    import httpx

    svc = client.get(SERVICE, namespace, name)
    url = (svc.get("status") or {}).get("url", "")
    if not url:
        raise CLIError(f"function '{name}' has no URL yet: is it ready? (wisp func describe {name})")
    target = httpx.URL(url)
    return str(target.copy_with(host="127.0.0.1")), {"Host": target.host}


@func_app.command("invoke")
def func_invoke(name: Annotated[str | None, typer.Argument(help="Deployed function (default: func.yaml's).")]
                = None,
                path: PathOpt = Path("."), namespace: NamespaceOpt = None,
                url: Annotated[str | None, typer.Option("--url", help="Call this URL (e.g. `func run`'s).")] = None,
                local: Annotated[bool, typer.Option("--local", help="Call `wisp func run` on :8080.")] = False,
                fmt: Annotated[str | None, typer.Option("--format", "-f", help="http or cloudevent.")] = None,
                data: Annotated[str | None, typer.Option("--data", "-d", help="Body or event data.")] = None,
                event_type: Annotated[str, typer.Option("--type", help="CloudEvent type.")] = "wisp.func.invoke",
                source: Annotated[str, typer.Option("--source", help="CloudEvent source.")] = "wisp/cli",
                timeout: Annotated[float, typer.Option("--timeout")] = 30.0) -> None:
    """Call a function, locally or deployed, with an HTTP request or a CloudEvent; print the answer."""
    import httpx

    from wisp.functions.invoke import build_invocation, describe_reply

    config = _config(path) if (path / "func.yaml").exists() else None
    kind = fmt or (config.invoke if config else "http")
    if kind not in ("http", "cloudevent"):
        raise CLIError(f"--format must be http or cloudevent, not {kind!r}")
    headers: dict[str, str] = {}
    if url is None and local:
        url = "http://127.0.0.1:8080/"
    if url is None:
        fn = name or (config.name if config else None)
        if fn is None:
            raise CLIError("which function? give its NAME, or run in (or --path to) its folder")
        ns = namespace or (config.namespace if config else "default")
        url, headers = _target_url(Client(STATE.api), fn, ns)
    call = build_invocation(kind, data, event_type=event_type, source=source)  # type: ignore[arg-type]
    try:
        resp = httpx.request(call.method, url, headers={**headers, **call.headers}, content=call.body,
                             timeout=timeout)
    except httpx.HTTPError as exc:
        raise CLIError(f"calling {url} failed: {exc}") from None
    sys.stdout.write(describe_reply(kind, dict(resp.headers), resp.content))  # type: ignore[arg-type]
    if resp.status_code >= 400:
        raise CLIError(f"the function answered {resp.status_code}")


@func_app.command("list")
def func_list(namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
              all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False) -> None:
    """List deployed functions."""
    items = Client(STATE.api).list(SERVICE, None if all_namespaces else namespace, FUNCTION_LABEL)
    if not items:
        output.err_console.print("No functions found.")
        return
    rows = []
    for svc in items:
        annotations = ((svc["spec"].get("template") or {}).get("metadata") or {}).get("annotations") or {}
        _, ready, reason = output.ready_summary(svc)
        rows.append((svc["metadata"]["namespace"], svc["metadata"]["name"], (svc.get("status") or {}).get("url", ""),
                     annotations.get(RUNTIME_ANNOTATION, ""), ready, reason))
    output.table(("NAMESPACE", "NAME", "URL", "RUNTIME", "READY", "REASON"), rows)


def _function(client: Client, name: str, namespace: str) -> dict[str, Any]:
    svc = client.get(SERVICE, namespace, name)
    if FUNCTION_LABEL not in (svc["metadata"].get("labels") or {}):
        raise CLIError(f"service '{name}' is not a function (deploy it with `wisp func deploy`)")
    return svc


@func_app.command("describe")
def func_describe(name: str, namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
                  output_format: Annotated[str, typer.Option("--output", "-o")] = "") -> None:
    """Show a function: URL, image, runtime, revision and readiness."""
    svc = _function(Client(STATE.api), name, namespace)
    if output_format:
        output.dump(svc, output_format)
        return
    template = svc["spec"].get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    status = svc.get("status") or {}
    _, ready, reason = output.ready_summary(svc)
    rows = [("Name", name), ("Namespace", namespace), ("URL", status.get("url", "")),
            ("Image", ((template.get("spec") or {}).get("containers") or [{}])[0].get("image", "")),
            ("Runtime", annotations.get(RUNTIME_ANNOTATION, "")),
            ("Revision", status.get("latestReadyRevisionName", "")), ("Ready", f"{ready} {reason}".strip())]
    for key, value in rows:
        output.console.print(f"{key + ':':<11}{value}")


@func_app.command("delete")
def func_delete(name: str, namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default") -> None:
    """Delete a deployed function (its Service, revisions and instances)."""
    client = Client(STATE.api)
    _function(client, name, namespace)
    client.delete(SERVICE, namespace, name)
    output.console.print(f"Function '{name}' deleted in namespace '{namespace}'.")
