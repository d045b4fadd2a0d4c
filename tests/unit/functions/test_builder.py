"""The function builder: two layers, reproducible digests, cached dependencies, clear build errors."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from wisp.build import ImageStore
from wisp.functions import FunctionError, build_function, create_project
from wisp.functions.builder import requirements_key
from wisp.runtime.function import DEPS_ID_FILE


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "fn"
    create_project(folder, "fn")
    return folder


def layer_names(store: ImageStore, digest: str) -> list[str]:
    with tarfile.open(fileobj=store.open_blob(digest), mode="r:gz") as archive:
        return archive.getnames()


def test_a_build_is_a_two_layer_image_that_runs_the_function_server(
        project: Path, store: ImageStore, tmp_path: Path) -> None:
    result = build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert result.reference == f"default/fn:latest@{result.image.digest}"
    assert store.resolve("default/fn:latest") == result.image.digest
    _, manifest = store.image_manifest(result.image.digest)
    deps, code = (layer["digest"] for layer in manifest["layers"])
    assert layer_names(store, deps) == ["deps", f"deps/{DEPS_ID_FILE}"]
    assert {"app", "app/main.py", "app/func.yaml", "app/requirements.txt"} <= set(layer_names(store, code))
    run = store.image_config(result.image.digest)["config"]
    assert run["Entrypoint"][1:] == ["-m", "wisp.runtime.funcserver", "--deps", "../deps", "--signature", "http",
                                     "main:handle"]
    assert run["WorkingDir"] == "/app"


def test_same_inputs_give_the_same_digest_and_caches_do_not_count(
        project: Path, store: ImageStore, tmp_path: Path) -> None:
    first = build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    again = build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert again.image.digest == first.image.digest and again.deps.cached
    # A fresh store and a fresh dependency cache still give the very same bytes.
    other = build_function(project, ImageStore(tmp_path / "other"), cache_dir=tmp_path / "cache2", offline=True)
    assert other.image.digest == first.image.digest and not other.deps.cached
    (project / "main.py").write_text((project / "main.py").read_text() + "\n# changed\n")
    changed = build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert changed.image.digest != first.image.digest
    assert changed.deps.layer.digest == first.deps.layer.digest


def test_dependencies_install_offline_from_the_wheel_cache(
        project: Path, store: ImageStore, tmp_path: Path, wheels: Path) -> None:
    (project / "requirements.txt").write_text("tinylib==1.0\n")
    (project / "main.py").write_text("import tinylib\n\ndef handle(request):\n    return str(tinylib.VALUE)\n")
    result = build_function(project, store, cache_dir=tmp_path / "cache", wheels=wheels, offline=True)
    assert (result.deps.folder / "tinylib" / "__init__.py").is_file()
    assert (result.deps.folder / DEPS_ID_FILE).read_text().strip() == result.deps.key
    _, manifest = store.image_manifest(result.image.digest)
    assert "deps/tinylib/__init__.py" in layer_names(store, manifest["layers"][0]["digest"])
    again = build_function(project, store, cache_dir=tmp_path / "cache", wheels=wheels, offline=True)
    assert again.deps.cached and again.image.digest == result.image.digest


def test_bad_requirements_fail_before_anything_is_stored(project: Path, store: ImageStore, tmp_path: Path) -> None:
    (project / "requirements.txt").write_text("no-such-package-for-wisp-tests==9.9\n")
    with pytest.raises(FunctionError, match=r"installing requirements.txt failed[\s\S]*no-such-package"):
        build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert store.list_tags() == {}


def test_syntax_errors_are_reported_with_file_and_line(project: Path, store: ImageStore, tmp_path: Path) -> None:
    (project / "helpers.py").write_text("x = 1\ndef broken(:\n")
    with pytest.raises(FunctionError, match=r"helpers.py:2: "):
        build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert store.list_tags() == {}


def test_import_errors_are_reported_before_deploying(project: Path, store: ImageStore, tmp_path: Path) -> None:
    (project / "main.py").write_text("import not_installed_anywhere_xyz\n")
    with pytest.raises(FunctionError, match=r"cannot be loaded[\s\S]*not_installed_anywhere_xyz"):
        build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    (project / "main.py").write_text("raise RuntimeError('config missing')\n")
    with pytest.raises(FunctionError, match="RuntimeError: config missing"):
        build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    (project / "main.py").write_text("handler = 1\n")
    with pytest.raises(FunctionError, match="no attribute 'handle'"):
        build_function(project, store, cache_dir=tmp_path / "cache", offline=True)
    assert not (project / "__pycache__").exists()


def test_the_dependency_key_ignores_line_endings_but_not_content() -> None:
    assert requirements_key(b"a==1\r\nb\r\n", "py") == requirements_key(b"a==1\nb\n", "py")
    assert requirements_key(b"a==1\n", "py") != requirements_key(b"a==2\n", "py")
    assert requirements_key(b"a==1\n", "py") != requirements_key(b"a==1\n", "other-python")
