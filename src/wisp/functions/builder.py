"""`wisp func build`: a function project → a two-layer OCI image in the content-addressed store.

Layer 1 holds the dependencies (`pip install --target` of requirements.txt) under `deps/`; it is
cached by the hash of the requirements (and the interpreter), installed offline from a wheel cache
when it can be, and shared by every build with the same requirements. Layer 2 holds the code under
`app/`. Both layers are packed reproducibly (sorted, zeroed times and owners), bytecode caches are
left out, and nothing about the build time enters the config: same inputs, same digest.

Before anything is stored, the build checks what would otherwise only fail in production: every
Python file must compile, and the entrypoint must import (with its dependencies) and be callable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from wisp.build import BuildError, Descriptor, ImageRef, ImageStore
from wisp.build.oci import MT_CONFIG, MT_MANIFEST, canonical_json, host_platform
from wisp.build.pack import SourceEntry, collect_entries, write_layer
from wisp.functions.project import FuncConfig, FunctionError, load_config
from wisp.runtime.function import DEPS_ID_FILE

REQUIREMENTS = "requirements.txt"
DEPS_DIR, CODE_DIR = "deps", "app"
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", ".wisp"})
PIP_TIMEOUT = 600.0
IMPORT_CHECK_TIMEOUT = 60.0


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wisp"


def default_wheel_dir() -> Path:
    return Path(os.environ.get("WISP_WHEEL_CACHE", default_cache_dir() / "wheels"))


@dataclass(frozen=True)
class DepsLayer:
    """The installed dependencies of one requirements set, and their layer in the store."""

    key: str  # sha256 of requirements + interpreter: the zygote sharing key as well
    folder: Path  # the installed packages (what goes on sys.path)
    layer: Descriptor
    diff_id: str
    cached: bool  # True when neither pip nor packing ran


@dataclass(frozen=True)
class BuildResult:
    """What `wisp func build` reports: the image and how its dependency layer was obtained."""

    config: FuncConfig
    image: ImageRef
    deps: DepsLayer

    @property
    def reference(self) -> str:
        return str(self.image)


# ---- checks ----------------------------------------------------------------------------------


def _packable(entry: SourceEntry) -> bool:
    parts = entry.rel.split("/")
    return not SKIPPED_PARTS.intersection(parts) and not entry.rel.endswith((".pyc", ".pyo"))


def code_entries(project: Path) -> list[SourceEntry]:
    """The project's files as the code layer will hold them (ignore files honoured, caches left out)."""
    return [e for e in collect_entries(project) if _packable(e)]


def check_sources(project: Path, entries: list[SourceEntry]) -> None:
    """Every .py file must compile; all syntax errors are reported together, with file and line."""
    problems = []
    for entry in entries:
        if entry.kind != "file" or not entry.rel.endswith(".py"):
            continue
        try:
            compile(entry.path.read_bytes(), entry.rel, "exec", dont_inherit=True)
        except SyntaxError as exc:
            problems.append(f"{entry.rel}:{exc.lineno}: {exc.msg}")
        except ValueError as exc:  # e.g. null bytes
            problems.append(f"{entry.rel}: {exc}")
    if problems:
        raise FunctionError("syntax errors, nothing was built:\n  " + "\n  ".join(problems))


CHECK_SCRIPT = """
import sys
from wisp.runtime.funcserver import EntrypointError, add_paths, kind_of, load_entrypoint
add_paths(sys.argv[2] or None)
try:
    obj = load_entrypoint(sys.argv[1])
except EntrypointError as exc:
    print(exc, file=sys.stderr)
    if exc.__cause__ is not None:
        import traceback
        traceback.print_exception(exc.__cause__, file=sys.stderr)
    sys.exit(1)
print(kind_of(obj, sys.argv[3]))
"""


def check_entrypoint(project: Path, config: FuncConfig, deps: Path, python: str) -> str:
    """Import the entrypoint in a fresh interpreter, as an instance would; return its kind."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PORT")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of the user's folder
    env.update(config.env)
    try:
        done = subprocess.run([python, "-c", CHECK_SCRIPT, config.entrypoint, str(deps), config.invoke],
                              cwd=project, env=env, capture_output=True, text=True,
                              timeout=IMPORT_CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FunctionError(f"importing {config.entrypoint} took over {IMPORT_CHECK_TIMEOUT:.0f}s; "
                            "nothing was built") from None
    if done.returncode != 0:
        detail = "\n  ".join(done.stderr.strip().splitlines()[-12:])
        raise FunctionError(f"the entrypoint {config.entrypoint} cannot be loaded, nothing was built:\n  {detail}")
    return done.stdout.strip()


# ---- the dependency layer ----------------------------------------------------------------------


def requirements_key(requirements: bytes, python: str) -> str:
    """Identity of a dependency set: the requirements text plus the interpreter and platform."""
    h = hashlib.sha256()
    h.update(requirements.replace(b"\r\n", b"\n").strip() + b"\n")
    h.update(f"{python}|{sys.version_info[:2]}|{platform.machine()}".encode())
    return h.hexdigest()


def _has_requirements(text: bytes) -> bool:
    lines = (line.split(b"#", 1)[0].strip() for line in text.splitlines())
    return any(lines)


def _pip(python: str, target: Path, requirements: Path, cwd: Path,
         extra: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [python, "-m", "pip", "install", "--target", str(target), "-r", str(requirements), "--no-compile",
           "--disable-pip-version-check", "--no-input", "--quiet", *extra]
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=PIP_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FunctionError(f"installing {REQUIREMENTS} took over {PIP_TIMEOUT:.0f}s") from None


def install_requirements(python: str, target: Path, requirements: Path, project: Path,
                         wheels: Path | None, offline: bool) -> None:
    """Offline from the wheel cache first; then (unless `offline`) from the package index."""
    attempts: list[list[str]] = []
    links = ["--find-links", str(wheels)] if wheels is not None and wheels.is_dir() else []
    if links or offline:
        attempts.append(["--no-index", *links])
    if not offline:
        attempts.append(links)
    errors = ""
    for extra in attempts:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        done = _pip(python, target, requirements, project, extra)
        if done.returncode == 0:
            return
        errors = done.stderr.strip() or done.stdout.strip()
    lines = [line for line in errors.splitlines() if line.strip()][-10:]
    hint = " (offline: only the wheel cache was used)" if offline else ""
    raise FunctionError(f"installing {REQUIREMENTS} failed{hint}, nothing was built:\n  " + "\n  ".join(lines))


def _strip_bytecode(folder: Path) -> None:
    for cache in sorted(folder.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)


def ensure_deps(project: Path, cache_dir: Path, *, wheels: Path | None = None, offline: bool = False,
                python: str = sys.executable) -> tuple[str, Path, bool]:
    """The installed dependency folder for the project's requirements: (key, folder, was cached)."""
    req_path = project / REQUIREMENTS
    text = req_path.read_bytes() if req_path.is_file() else b""
    key = requirements_key(text, python)
    folder = cache_dir / "deps" / key
    if (folder / DEPS_ID_FILE).is_file():
        return key, folder, True
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=_mkdir(cache_dir / "deps")))
    try:
        if _has_requirements(text):
            install_requirements(python, tmp / "site", req_path, project, wheels, offline)
        else:
            (tmp / "site").mkdir()
        _strip_bytecode(tmp / "site")
        (tmp / "site" / DEPS_ID_FILE).write_text(key + "\n")
        try:
            os.rename(tmp / "site", folder)
        except OSError:  # a concurrent build got there first: theirs is as good as ours
            if not (folder / DEPS_ID_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return key, folder, False


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _prefixed(prefix: str, entries: list[SourceEntry], root: Path) -> list[SourceEntry]:
    top = SourceEntry(prefix, root, "dir")
    return [top, *(dataclasses.replace(e, rel=f"{prefix}/{e.rel}") for e in entries)]


def deps_layer(store: ImageStore, key: str, folder: Path, cache_dir: Path, was_cached: bool) -> DepsLayer:
    """The layer for an installed dependency folder, reusing the stored blob when it is still there."""
    record = cache_dir / "deps" / f"{key}.layer.json"
    try:
        saved = json.loads(record.read_text())
        layer = Descriptor.from_dict(saved["layer"])
        if store.has_blob(layer.digest):
            return DepsLayer(key, folder, layer, saved["diff_id"], was_cached)
    except (OSError, ValueError, KeyError, BuildError):
        pass
    entries = [e for e in collect_entries(folder) if _packable(e)]
    layer, diff_id = write_layer(store, _prefixed(DEPS_DIR, entries, folder))
    record.write_text(json.dumps({"layer": layer.to_dict(), "diff_id": diff_id}))
    return DepsLayer(key, folder, layer, diff_id, False)


# ---- the image ---------------------------------------------------------------------------------


def run_command(config: FuncConfig, python: str) -> list[str]:
    """The instance command: the process backend runs it as is, the function backend forks it."""
    return [python, "-m", "wisp.runtime.funcserver", "--deps", f"../{DEPS_DIR}", "--signature",
            config.invoke, config.entrypoint]


def function_image_config(config: FuncConfig, python: str, diff_ids: list[str]) -> dict[str, object]:
    os_name, arch = host_platform()
    run: dict[str, object] = {"Entrypoint": run_command(config, python), "WorkingDir": f"/{CODE_DIR}",
                              "Labels": {"dev.wisp.function": config.name,
                                         "dev.wisp.function.invoke": config.invoke}}
    if config.env:
        run["Env"] = [f"{k}={v}" for k, v in sorted(config.env.items())]
    return {"architecture": arch, "os": os_name, "config": run,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "wisp func build", "comment": "dependencies"},
                        {"created_by": "wisp func build", "comment": "function code"}]}


def build_function(project: Path, store: ImageStore, *, cache_dir: Path | None = None,
                   wheels: Path | None = None, offline: bool = False, tag: str = "latest",
                   python: str = sys.executable, check_import: bool = True) -> BuildResult:
    """Build the project into `store` as `<namespace>/<name>:<tag>`; raise FunctionError on any problem."""
    project = project.resolve()
    config = load_config(project)
    cache_dir = cache_dir or default_cache_dir()
    try:
        entries = code_entries(project)
        check_sources(project, entries)
        key, folder, was_cached = ensure_deps(project, cache_dir, wheels=wheels, offline=offline, python=python)
        if check_import:
            check_entrypoint(project, config, folder, python)
        deps = deps_layer(store, key, folder, cache_dir, was_cached)
        code, code_diff = write_layer(store, _prefixed(CODE_DIR, entries, project))
        image_cfg = function_image_config(config, python, [deps.diff_id, code_diff])
        cfg_desc = store.put_blob(canonical_json(image_cfg), media_type=MT_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cfg_desc.to_dict(),
                    "layers": [deps.layer.to_dict(), code.to_dict()]}
        digest = store.put_manifest(manifest)
        name = f"{config.namespace}/{config.name}"
        store.tag(f"{name}:{tag}", digest)
    except BuildError as exc:
        raise FunctionError(str(exc)) from None
    return BuildResult(config, ImageRef(name, tag, digest), deps)
