"""The /v2 routes in-process: status codes and distribution-spec error bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.unit.build.helpers import Member, image_with_layers
from wisp.build import ImageStore, Registry
from wisp.build.oci import MT_MANIFEST
from wisp.clock import FakeClock


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def registry(store: ImageStore) -> Registry:
    return Registry(store, max_upload_bytes=1000, max_uploads=3, clock=FakeClock())


def asgi_client(registry: Registry) -> httpx.AsyncClient:
    app = Starlette(routes=[Mount("/v2", routes=registry.routes)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry")


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(registry) as c:
        yield c
    registry.close()


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["errors"][0]) == {"code", "message", "detail"}
    return str(body["errors"][0]["code"])


async def test_base_endpoint_answers_empty_object(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_monolithic_upload_then_head_and_get(client: httpx.AsyncClient) -> None:
    data = b"layer-bytes"
    r = await client.post(f"/v2/org/app/blobs/uploads/?digest={sha(data)}", content=data)
    assert r.status_code == 201
    assert r.headers["location"] == f"/v2/org/app/blobs/{sha(data)}"
    head = await client.head(f"/v2/org/app/blobs/{sha(data)}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
    assert head.headers["docker-content-digest"] == sha(data)
    assert (await client.get(f"/v2/org/app/blobs/{sha(data)}")).content == data


async def test_unknown_blob_and_bad_names(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v2/app/blobs/{sha(b'none')}")
    assert r.status_code == 404 and error_code(r) == "BLOB_UNKNOWN"
    r = await client.get("/v2/App/blobs/" + sha(b"x"))
    assert r.status_code == 400 and error_code(r) == "NAME_INVALID"
    r = await client.get("/v2/app/blobs/md5:abc")
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"


async def test_chunked_upload_in_order_and_out_of_order(client: httpx.AsyncClient, store: ImageStore) -> None:
    start = await client.post("/v2/app/blobs/uploads/")
    assert start.status_code == 202 and start.headers["range"] == "0-0"
    location = start.headers["location"]
    r = await client.patch(location, content=b"hello ", headers={"Content-Range": "0-5"})
    assert r.status_code == 202 and r.headers["range"] == "0-5"
    bad = await client.patch(location, content=b"x", headers={"Content-Range": "2-2"})
    assert bad.status_code == 416 and error_code(bad) == "BLOB_UPLOAD_INVALID"
    assert bad.headers["range"] == "0-5"
    await client.patch(location, content=b"world")
    status = await client.get(location)
    assert status.status_code == 204 and status.headers["range"] == "0-10"
    done = await client.put(location, params={"digest": sha(b"hello world!")}, content=b"!")
    assert done.status_code == 201
    assert store.read_blob(sha(b"hello world!")) == b"hello world!"
    assert (await client.get(location)).status_code == 404


async def test_digest_mismatch_is_digest_invalid_and_ends_the_session(client: httpx.AsyncClient,
                                                                store: ImageStore) -> None:
    location = (await client.post("/v2/app/blobs/uploads/")).headers["location"]
    await client.patch(location, content=b"abc")
    r = await client.put(location, params={"digest": sha(b"xyz")})
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    assert not store.has_blob(sha(b"abc"))
    r = await client.get(location)
    assert r.status_code == 404 and error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert list(store.ingest_dir.iterdir()) == []


async def test_upload_past_the_limit_is_413(client: httpx.AsyncClient, store: ImageStore) -> None:
    location = (await client.post("/v2/app/blobs/uploads/")).headers["location"]
    assert (await client.patch(location, content=b"x" * 600)).status_code == 202
    r = await client.patch(location, content=b"x" * 600)
    assert r.status_code == 413 and error_code(r) == "SIZE_INVALID"
    assert (await client.get(location)).status_code == 404
    big = b"y" * 1001
    r = await client.post(f"/v2/app/blobs/uploads/?digest={sha(big)}", content=big)
    assert r.status_code == 413
    assert list(store.ingest_dir.iterdir()) == []


async def test_sessions_are_bounded_and_expire(client: httpx.AsyncClient, registry: Registry) -> None:
    for _ in range(3):
        assert (await client.post("/v2/app/blobs/uploads/")).status_code == 202
    r = await client.post("/v2/app/blobs/uploads/")
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert registry.expire_uploads() == 0


async def test_stale_sessions_are_dropped_after_the_ttl(store: ImageStore) -> None:
    clock = FakeClock()
    registry = Registry(store, upload_ttl=60, clock=clock)
    async with asgi_client(registry) as c:
        location = (await c.post("/v2/app/blobs/uploads/")).headers["location"]
        await c.patch(location, content=b"partial")
        await clock.advance(61)
        assert registry.expire_uploads() == 1
        assert (await c.get(location)).status_code == 404
    assert list(store.ingest_dir.iterdir()) == []


async def test_cancelled_upload_is_gone(client: httpx.AsyncClient) -> None:
    location = (await client.post("/v2/app/blobs/uploads/")).headers["location"]
    assert (await client.delete(location)).status_code == 204
    assert (await client.patch(location, content=b"x")).status_code == 404


async def test_cross_repository_mount_of_known_blob(client: httpx.AsyncClient, store: ImageStore) -> None:
    digest = store.put_blob(b"shared").digest
    r = await client.post(f"/v2/other/blobs/uploads/?mount={digest}&from=app")
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest


async def test_manifest_put_get_head_and_tags(client: httpx.AsyncClient, store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("f", data=b"1")]])
    body = store.read_blob(digest)
    r = await client.put("/v2/org/app/manifests/v1", content=body, headers={"Content-Type": MT_MANIFEST})
    assert r.status_code == 201 and r.headers["docker-content-digest"] == digest
    assert r.headers["location"] == f"/v2/org/app/manifests/{digest}"
    got = await client.get("/v2/org/app/manifests/v1")
    assert got.content == body and got.headers["content-type"] == MT_MANIFEST
    head = await client.head(f"/v2/org/app/manifests/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(body))
    await client.put("/v2/org/app/manifests/v2", content=body)
    assert (await client.get("/v2/org/app/tags/list")).json() == {"name": "org/app", "tags": ["v1", "v2"]}
    page = await client.get("/v2/org/app/tags/list?n=1")
    assert page.json()["tags"] == ["v1"] and 'rel="next"' in page.headers["link"]
    assert (await client.get("/v2/org/app/tags/list?n=1&last=v1")).json()["tags"] == ["v2"]
    assert store.resolve("org/app:v1") == digest


async def test_manifest_errors(client: httpx.AsyncClient, store: ImageStore) -> None:
    r = await client.get("/v2/app/manifests/v1")
    assert r.status_code == 404 and error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.put("/v2/app/manifests/v1", content=b"{not json")
    assert r.status_code == 400 and error_code(r) == "MANIFEST_INVALID"
    missing = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
               "config": {"mediaType": "x", "digest": sha(b"cfg"), "size": 3}, "layers": []}
    r = await client.put("/v2/app/manifests/v1", content=json.dumps(missing).encode())
    assert r.status_code == 400 and error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"] == {"digests": [sha(b"cfg")]}
    digest = image_with_layers(store, [[Member("f", data=b"1")]])
    r = await client.put(f"/v2/app/manifests/{sha(b'other')}", content=store.read_blob(digest))
    assert r.status_code == 400 and error_code(r) == "DIGEST_INVALID"
    r = await client.get("/v2/nobody/tags/list")
    assert r.status_code == 404 and error_code(r) == "NAME_UNKNOWN"
    assert store.list_tags() == {}
