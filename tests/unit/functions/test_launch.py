"""Recognising function commands, zygote keys, and the zygote's pure helpers."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from wisp.runtime.base import InstanceSpec
from wisp.runtime.function import DEPS_ID_FILE, FunctionLaunch, deps_key, parse_launch
from wisp.runtime.zygote import decode, encode, exit_code, top_level_modules


def spec(*argv: str) -> InstanceSpec:
    return InstanceSpec("default", "r", list(argv))


def test_function_server_commands_are_recognised(tmp_path: Path) -> None:
    launch = parse_launch(spec(sys.executable, "-m", "wisp.runtime.funcserver", "--deps", "../deps",
                               "--signature=cloudevent", "main:handle"), str(tmp_path / "app"))
    assert launch == FunctionLaunch("main:handle", "cloudevent", (tmp_path / "deps").resolve())
    assert parse_launch(spec("python3", "-m", "wisp.runtime.funcserver", "app:app"), None) == \
        FunctionLaunch("app:app")


def test_other_commands_run_as_plain_processes() -> None:
    assert parse_launch(spec("python", "app.py"), None) is None
    assert parse_launch(spec("node", "-m", "wisp.runtime.funcserver", "x:y"), None) is None
    assert parse_launch(spec("python", "-m", "wisp.runtime.funcserver", "--reload", "x:y"), None) is None
    assert parse_launch(spec("python", "-m", "wisp.runtime.funcserver", "a:b", "c:d"), None) is None
    assert parse_launch(spec("python", "-m", "wisp.runtime.funcserver", "--signature", "grpc", "a:b"),
                        None) is None


def test_revisions_with_the_same_dependency_layer_share_a_zygote(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, ident in ((a, "sha256:1"), (b, "sha256:1"), (c, "sha256:2")):
        folder.mkdir()
        (folder / DEPS_ID_FILE).write_text(ident)
    assert deps_key(a) == deps_key(b) != deps_key(c)
    assert deps_key(None) == "none"
    assert deps_key(tmp_path / "unmarked") != deps_key(tmp_path / "other")


def test_top_level_modules_of_a_pip_target_folder(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "single.py").write_text("")
    (tmp_path / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / "pkg-1.0.dist-info").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "_private.py").write_text("")
    (tmp_path / "notapkg").mkdir()
    assert top_level_modules(tmp_path) == ["fast", "pkg", "single"]


def test_exit_codes_are_shell_style() -> None:
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    assert exit_code(os.waitpid(pid, 0)[1]) == 143
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert exit_code(os.waitpid(pid, 0)[1]) == 3


def test_messages_round_trip() -> None:
    message = {"type": "fork", "id": 1, "env": {"A": "b"}}
    assert decode(encode(message)) == message
