"""Helpers shared by the functions tests: a tiny wheel so dependency installs work offline."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest


def make_wheel(folder: Path, name: str = "tinylib", version: str = "1.0", code: str = "VALUE = 42\n") -> Path:
    """A minimal pure-Python wheel pip can install with --no-index --find-links."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": code,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: wisp-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, content in {**files, f"{dist}/RECORD": record}.items():
            zf.writestr(zipfile.ZipInfo(rel, (2020, 1, 1, 0, 0, 0)), content)
    return path


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    make_wheel(folder)
    return folder
