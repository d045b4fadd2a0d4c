"""Push and pull through the /v2 registry served by uvicorn on a real loopback socket."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.support import free_port, wait_for_port
from wisp.build import ImageStore, PushError, Registry, pack_directory, pull_image, push_image

pytestmark = pytest.mark.e2e
LIMIT = 4 * 1024 * 1024


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    """A uvicorn server in a background thread; stopped and joined by the fixture."""

    def __init__(self, root: Path) -> None:
        self.store = ImageStore(root / "images")
        self.registry = Registry(self.store, max_upload_bytes=LIMIT)
        app = Starlette(routes=[Mount("/v2", routes=self.registry.routes)])
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.registry.close()
        assert not self.thread.is_alive()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path / "server") as s:
        yield s


@pytest.fixture
def local(tmp_path: Path) -> ImageStore:
    src = tmp_path / "app"
    (src / "lib").mkdir(parents=True)
    (src / "app.py").write_text("import lib.helper\nprint('hello')\n")
    (src / "lib" / "helper.py").write_text("VALUE = 42\n")
    (src / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: several stream chunks
    store = ImageStore(tmp_path / "cache" / "images")
    pack_directory(store, src, name="team/hello", tag="v1", command=["python", "app.py"])
    return store


def test_push_then_pull_raw_gives_identical_bytes(server: Server, local: ImageStore) -> None:
    digest = push_image(local, "team/hello:v1", server.url)
    assert digest == local.resolve("team/hello:v1")
    with httpx.Client(base_url=server.url) as http:
        manifest = http.get("/v2/team/hello/manifests/v1")
        assert manifest.status_code == 200
        assert manifest.content == local.read_blob(digest)
        assert manifest.headers["docker-content-digest"] == digest
        head = http.head(f"/v2/team/hello/manifests/{digest}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(manifest.content))
        doc = json.loads(manifest.content)
        for desc in [doc["config"], *doc["layers"]]:
            blob = http.get(f"/v2/team/hello/blobs/{desc['digest']}")
            assert blob.status_code == 200 and sha(blob.content) == desc["digest"]
            assert blob.content == local.read_blob(desc["digest"])
        assert http.get("/v2/team/hello/tags/list").json() == {"name": "team/hello", "tags": ["v1"]}
    assert server.store.resolve("team/hello:v1") == digest
    assert server.store.image_config(digest)["config"]["Entrypoint"] == ["python", "app.py"]


def test_second_push_skips_blobs_the_server_has(server: Server, local: ImageStore) -> None:
    digest = push_image(local, "team/hello:v1", server.url)
    local.tag("team/hello:v2", digest)
    seen: list[str] = []
    with httpx.Client(base_url=server.url,
                      event_hooks={"request": [lambda r: seen.append(r.method)]}) as http:
        push_image(local, "team/hello:v2", server.url, client=http)
    assert seen == ["HEAD", "HEAD", "PUT"]
    assert server.store.tags_of("team/hello") == ["v1", "v2"]


def test_pull_into_a_fresh_store_round_trips(server: Server, local: ImageStore, tmp_path: Path) -> None:
    digest = push_image(local, "team/hello:v1", server.url)
    other = ImageStore(tmp_path / "node2" / "images")
    assert pull_image(other, "team/hello:v1", server.url) == digest
    root = other.unpack(other.resolve("team/hello:v1"))
    assert (root / "lib" / "helper.py").read_text() == "VALUE = 42\n"


def test_chunked_upload_over_the_socket(server: Server) -> None:
    parts = [b"a" * 70_000, b"b" * 70_000, b"c" * 10]
    data = b"".join(parts)
    with httpx.Client(base_url=server.url) as http:
        start = http.post("/v2/chunks/blobs/uploads/")
        assert start.status_code == 202
        url = start.headers["location"]
        offset = 0
        for part in parts:
            r = http.patch(url, content=part, headers={
                "Content-Range": f"{offset}-{offset + len(part) - 1}",
                "Content-Type": "application/octet-stream"})
            offset += len(part)
            assert r.status_code == 202 and r.headers["range"] == f"0-{offset - 1}"
            url = r.headers["location"]
        done = http.put(url, params={"digest": sha(data)})
        assert done.status_code == 201
        assert http.get(done.headers["location"]).content == data


def test_digest_mismatch_over_the_socket(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        url = http.post("/v2/app/blobs/uploads/").headers["location"]
        r = http.put(url, params={"digest": sha(b"expected")}, content=b"something else")
        assert r.status_code == 400
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert not server.store.has_blob(sha(b"something else"))


def test_streamed_upload_past_the_limit_is_refused(server: Server) -> None:
    def body() -> Iterator[bytes]:  # chunked transfer: no Content-Length to refuse early
        for _ in range(LIMIT // 65536 + 2):
            yield b"z" * 65536

    with httpx.Client(base_url=server.url) as http:
        url = http.post("/v2/app/blobs/uploads/").headers["location"]
        r = http.patch(url, content=body())
        assert r.status_code == 413 and r.json()["errors"][0]["code"] == "SIZE_INVALID"
    assert list(server.store.ingest_dir.iterdir()) == []


def test_push_to_nowhere_is_a_clear_error(local: ImageStore) -> None:
    with pytest.raises(PushError, match="cannot reach the registry"):
        push_image(local, "team/hello:v1", f"http://127.0.0.1:{free_port()}", timeout=2)
