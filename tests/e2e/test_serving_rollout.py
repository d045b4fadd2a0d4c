"""Serving e2e: create, update with `--source` snapshots, image digests, traffic splits and tags.

One `wisp serve` for the module; every test uses its own service name.
"""

from __future__ import annotations

import shutil
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import ServingServer, condition, write_app

pytestmark = pytest.mark.e2e
PY = sys.executable


def host(name: str, tag: str = "") -> str:
    return f"{tag}-{name}.default.localhost" if tag else f"{name}.default.localhost"


def digest_of(server: ServingServer, revision: str) -> str:
    rev = server.obj("Revision", revision)
    return str(rev["status"]["containerStatuses"][0]["imageDigest"])


def test_create_answers_with_the_apps_body(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    out = serving_server.cli("service", "create", "hello", "--env", "BODY=hi there", "--workdir", str(app),
                             "--", PY, "app.py")
    assert "http://hello.default.localhost" in out.stdout
    resp = serving_server.call(host("hello"))
    assert resp.status_code == 200
    assert resp.text == "hi there"
    svc = serving_server.obj("Service", "hello")
    assert condition(svc)["status"] == "True"
    assert svc["status"]["latestReadyRevisionName"] == "hello-00001"


def test_update_from_source_keeps_the_old_snapshot(serving_server: ServingServer, tmp_path: Path) -> None:
    src = write_app(tmp_path / "src", body="version one")
    serving_server.cli("service", "create", "snap", "--source", str(src), "--", PY, "app.py")
    assert serving_server.call(host("snap")).text == "version one"

    write_app(src, body="version two")  # edit the folder in place
    serving_server.cli("service", "update", "snap", "--source", str(src), "--tag", "snap-00001=old",
                       "--", PY, "app.py")
    assert serving_server.call(host("snap")).text == "version two"
    # The first revision still runs the code it was created from, through its tag URL.
    assert serving_server.call(host("snap", "old")).text == "version one"

    first, second = digest_of(serving_server, "snap-00001"), digest_of(serving_server, "snap-00002")
    assert first != second
    rootfs = serving_server.data_dir / "rootfs" / first.rpartition("sha256:")[2]
    snapshot = rootfs / "app.py"
    assert "version one" in snapshot.read_text()
    assert "version two" not in snapshot.read_text()
    for path in (rootfs, snapshot):  # snapshots are read-only on disk
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path


def test_identical_content_gives_the_identical_digest(serving_server: ServingServer, tmp_path: Path) -> None:
    one = write_app(tmp_path / "one", body="same")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    serving_server.cli("service", "create", "twin-a", "--source", str(one), "--", PY, "app.py")
    serving_server.cli("service", "create", "twin-b", "--source", str(two), "--", PY, "app.py")
    a, b = digest_of(serving_server, "twin-a-00001"), digest_of(serving_server, "twin-b-00001")
    assert a.rpartition("@")[2] == b.rpartition("@")[2]
    assert a.rpartition("@")[2].startswith("sha256:")


def test_split_and_tag_urls(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.cli("service", "create", "split", "--env", "BODY=blue", "--workdir", str(app),
                       "--", PY, "app.py")
    serving_server.cli("service", "update", "split", "--env", "BODY=green")
    serving_server.cli("service", "update", "split", "--traffic", "split-00001=50", "--traffic",
                       "split-00002=50", "--tag", "split-00001=blue", "--tag", "split-00002=green")

    counts = Counter(serving_server.call(host("split")).text for _ in range(200))
    assert set(counts) == {"blue", "green"}
    assert counts["blue"] >= 50 and counts["green"] >= 50, counts
    for tag in ("blue", "green"):
        bodies = Counter(serving_server.call(host("split", tag)).text for _ in range(40))
        assert bodies == {tag: 40}

    route = serving_server.obj("Route", "split")
    shares: Counter[str] = Counter()
    for target in route["status"]["traffic"]:
        shares[target["revisionName"]] += target["percent"]
    assert shares == {"split-00001": 50, "split-00002": 50}
    assert {(t["revisionName"], t["tag"]) for t in route["status"]["traffic"] if t.get("tag")} == {
        ("split-00001", "blue"), ("split-00002", "green")}
