"""A SinkBinding reaches instances that are already running: they are rolled without a failed request."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServingServer, wait_until, write_app

pytestmark = pytest.mark.e2e


def test_binding_rolls_running_instances_without_dropping_requests(serving_server: ServingServer,
                                                                  tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.cli("service", "create", "bound", "--scale-min", "1", "--workdir", str(app), "--",
                       "python3", "app.py")
    host = "bound.default.localhost"
    assert "K_SINK" not in serving_server.call(host, "/env").json()

    failures: list[str] = []
    stop = threading.Event()

    def prober() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    resp = client.get(serving_server.ingress + "/", headers={"Host": host})
                    if resp.status_code != 200:
                        failures.append(str(resp.status_code))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=prober) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        serving_server.apply({
            "apiVersion": "sources.knative.dev/v1", "kind": "SinkBinding", "metadata": {"name": "bind"},
            "spec": {"subject": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "bound"},
                     "sink": {"uri": "http://sink.example/events"},
                     "ceOverrides": {"extensions": {"team": "blue"}}}})

        def bound_env() -> dict[str, str] | None:
            env = serving_server.call(host, "/env").json()
            return env if env.get("K_SINK") == "http://sink.example/events" else None

        env = wait_until(bound_env, timeout=20, what="K_SINK in the running instance")
        assert '"team":"blue"' in env["K_CE_OVERRIDES"]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
