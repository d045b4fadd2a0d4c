"""The pure parts of the process backend: environment, paths, exit codes, ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisp.runtime.base import InstanceSpec
from wisp.runtime.process import PortAllocator, base_env, exit_status, resolve_argv, resolve_cwd


def spec(**kw: object) -> InstanceSpec:
    fields: dict[str, object] = dict(namespace="ns", revision="hello-00001", command=["app"])
    fields.update(kw)
    return InstanceSpec(**fields)  # type: ignore[arg-type]


def test_env_has_contract_vars_over_user_env_over_a_minimal_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_OF_WISP", "do-not-leak")
    monkeypatch.setenv("HOME", "/home/x")
    env = base_env(spec(service="hello", configuration="hello",
                        env={"PORT": "1", "K_REVISION": "x", "LANG": "de_DE.UTF-8", "A": "b"}), 8123)
    assert env["PORT"] == "8123" and env["K_REVISION"] == "hello-00001"
    assert env["K_SERVICE"] == env["K_CONFIGURATION"] == "hello"
    assert env["A"] == "b" and env["LANG"] == "de_DE.UTF-8" and env["HOME"] == "/home/x"
    assert "SECRET_OF_WISP" not in env and env["PATH"]


def test_k_service_is_present_and_empty_without_a_service() -> None:
    assert base_env(spec(), 1)["K_SERVICE"] == ""


def test_cwd_and_argv_resolve_inside_rootfs(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "tool").write_text("")
    assert resolve_cwd(spec()) is None
    assert resolve_cwd(spec(working_dir="/srv")) == "/srv"
    assert resolve_cwd(spec(rootfs=tmp_path)) == str(tmp_path)
    assert resolve_cwd(spec(rootfs=tmp_path, working_dir="/app")) == str(tmp_path / "app")
    assert resolve_argv(spec(command=["./run", "-x"], rootfs=tmp_path)) == [str(tmp_path / "run"), "-x"]
    assert resolve_argv(spec(command=["/usr/bin/tool"], rootfs=tmp_path)) == [str(tmp_path / "usr/bin/tool")]
    assert resolve_argv(spec(command=["/bin/sh"], rootfs=tmp_path)) == ["/bin/sh"]  # not in the image
    assert resolve_argv(spec(command=["python3"], args=["a.py"], rootfs=tmp_path)) == ["python3", "a.py"]


def test_exit_status_maps_signals_like_a_shell() -> None:
    assert (exit_status(0), exit_status(3), exit_status(-9), exit_status(-15)) == (0, 3, 137, 143)


def test_port_allocator_never_repeats_a_recent_port() -> None:
    ports = PortAllocator("127.0.0.1")
    got = [ports.allocate() for _ in range(50)]
    assert len(set(got)) == 50 and all(p > 0 for p in got)


def test_backends_are_chosen_by_name(tmp_path: Path) -> None:
    import wisp.runtime as runtime
    from wisp.clock import FakeClock
    from wisp.runtime.process import ProcessBackend

    assert isinstance(runtime.create_backend("process", tmp_path, FakeClock()), ProcessBackend)
    with pytest.raises(runtime.RuntimeBackendError):
        runtime.create_backend("podman-on-mars", tmp_path, FakeClock())
    assert sorted(runtime.__all__) == runtime.__all__
