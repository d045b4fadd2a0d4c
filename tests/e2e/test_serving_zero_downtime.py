"""Serving e2e: rolling out new revisions under continuous load loses no request.

Several clients hammer the service (some reuse keep-alive connections, some open a new connection
per request, some make requests that take 300 ms) while the service is updated three times. Every
request must get a 200 from one of the revisions: no 502/503, no reset or refused connection.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServingServer, wait_until, write_app

pytestmark = pytest.mark.e2e
HOST = "zd.default.localhost"


class Prober:
    """Sends requests in a loop from one thread until stopped, recording each outcome."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        self.url = url
        self.keep_alive = keep_alive
        self.bodies: Counter[str] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keep_alive else 0)
        headers = {"Host": HOST} if self.keep_alive else {"Host": HOST, "Connection": "close"}
        with httpx.Client(limits=limits, timeout=10, headers=headers) as client:
            while not self.stop.is_set():
                try:
                    resp = client.get(self.url)
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if resp.status_code == 200:
                    self.bodies[resp.text] += 1
                else:
                    self.errors.append(f"{resp.status_code}: {resp.text[:200]}")


def test_three_updates_under_load_lose_no_request(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.cli("service", "create", "zd", "--env", "BODY=v0", "--workdir", str(app),
                       "--", sys.executable, "app.py")
    probers = [Prober(serving_server.ingress + "/", keep_alive=i % 2 == 0) for i in range(6)]
    # Slow requests are in flight whenever an old instance leaves rotation: drain must wait for them.
    probers += [Prober(serving_server.ingress + "/slow", keep_alive=i == 0) for i in range(2)]
    for p in probers:
        p.thread.start()
    try:
        time.sleep(0.3)
        for version in (1, 2, 3):
            serving_server.cli("service", "update", "zd", "--env", f"BODY=v{version}")
            time.sleep(0.3)
        # Each kind of client keeps working after the last rollout.
        wait_until(lambda: all(p.bodies["v3"] > 0 for p in probers), what="every prober to reach v3")
    finally:
        for p in probers:
            p.stop.set()
        for p in probers:
            p.thread.join(15)

    errors = [e for p in probers for e in p.errors]
    bodies = sum((p.bodies for p in probers), Counter())
    assert not errors, f"{len(errors)} failed requests of {bodies.total() + len(errors)}: {errors[:5]}"
    assert set(bodies) == {"v0", "v1", "v2", "v3"}, bodies
    assert bodies.total() > 200
    # The old revisions really were stopped under the probers' feet (else the test proves nothing).
    for old in ("zd-00001", "zd-00002", "zd-00003"):
        rev = wait_until(lambda old=old: (r := serving_server.obj("Revision", old))  # type: ignore[misc]
                         and (r.get("status") or {}).get("actualReplicas") == 0 and r, what=f"{old} stopped")
        assert rev["metadata"]["labels"]["serving.knative.dev/routingState"] == "reserve"
