"""The HTTP API follows Kubernetes conventions, over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from wisp.platform import Platform, Settings

SVC_PATH = "/apis/serving.knative.dev/v1/namespaces/default/services"


def service(name: str = "hello", image: str = "img:1") -> dict:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    platform = Platform(Settings(data_dir=tmp_path, api_addr=f"127.0.0.1:{port}",
                                 ingress_addr=f"127.0.0.1:{free_port()}"))
    await platform.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    await platform.stop()


async def test_discovery(api: httpx.AsyncClient) -> None:
    groups = (await api.get("/apis")).json()
    names = {g["name"] for g in groups["groups"]}
    assert {"serving.knative.dev", "eventing.knative.dev", "messaging.knative.dev", "flows.knative.dev",
            "sources.knative.dev"} <= names
    res = (await api.get("/apis/serving.knative.dev/v1")).json()
    services = next(r for r in res["resources"] if r["name"] == "services")
    assert services["kind"] == "Service" and services["namespaced"] and "ksvc" in services["shortNames"]
    assert (await api.get("/api")).json()["versions"] == ["v1"]
    assert (await api.get("/version")).json()["major"] == "1"
    assert "apis/serving.knative.dev/v1" in (await api.get("/openapi/v3")).json()["paths"]


async def test_crud_and_status_shapes(api: httpx.AsyncClient) -> None:
    r = await api.post(SVC_PATH, json=service())
    assert r.status_code == 201
    created = r.json()
    assert created["metadata"]["annotations"]["serving.knative.dev/creator"]
    got = (await api.get(f"{SVC_PATH}/hello")).json()
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    listed = (await api.get(SVC_PATH)).json()
    assert listed["kind"] == "ServiceList" and [i["metadata"]["name"] for i in listed["items"]] == ["hello"]
    r = await api.get(f"{SVC_PATH}/nope")
    body = r.json()
    assert r.status_code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    assert (await api.delete(f"{SVC_PATH}/hello")).status_code == 200
    assert (await api.get(f"{SVC_PATH}/hello")).status_code == 404


async def test_yaml_in_and_out(api: httpx.AsyncClient) -> None:
    body = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: y}\n" \
           "spec: {template: {spec: {containers: [{image: a}]}}}\n"
    r = await api.post(SVC_PATH, content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201
    r = await api.get(f"{SVC_PATH}/y", params={"output": "yaml"})
    assert r.headers["content-type"].startswith("application/yaml") and "kind: Service" in r.text


async def test_stale_put_is_409(api: httpx.AsyncClient) -> None:
    await api.post(SVC_PATH, json=service())
    await asyncio.sleep(0.1)  # let the controllers write status (that moves resourceVersion too)
    created = (await api.get(f"{SVC_PATH}/hello")).json()
    first = dict(created, spec=service(image="img:2")["spec"])
    assert (await api.put(f"{SVC_PATH}/hello", json=first)).status_code == 200
    stale = dict(created, spec=service(image="img:3")["spec"])
    r = await api.put(f"{SVC_PATH}/hello", json=stale)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    current = (await api.get(f"{SVC_PATH}/hello")).json()
    assert current["spec"]["template"]["spec"]["containers"][0]["image"] == "img:2"


async def test_patch_types(api: httpx.AsyncClient) -> None:
    await api.post(SVC_PATH, json=service())
    r = await api.patch(f"{SVC_PATH}/hello", content=json.dumps({"metadata": {"labels": {"a": "b"}}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["metadata"]["labels"] == {"a": "b"}
    ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "img:9"}]
    r = await api.patch(f"{SVC_PATH}/hello", content=json.dumps(ops),
                        headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200
    assert r.json()["spec"]["template"]["spec"]["containers"][0]["image"] == "img:9"
    assert r.json()["metadata"]["generation"] == 2
    r = await api.patch(f"{SVC_PATH}/hello", content="{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_validation_errors_name_the_field(api: httpx.AsyncClient) -> None:
    bad = service()
    bad["spec"]["template"]["spec"]["containerConcurrency"] = 1001
    r = await api.post(SVC_PATH, json=bad)
    body = r.json()
    assert r.status_code == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.template.spec.containerConcurrency"
    assert (await api.get(SVC_PATH)).json()["items"] == []


@pytest.mark.parametrize(("body", "ctype", "code", "needle"), [
    (b"{not json", "application/json", 400, "invalid JSON"),
    (b"a: [unclosed", "application/yaml", 400, "invalid YAML"),
    (b"[1, 2]", "application/json", 400, "must be an object"),
    (b"", "application/json", 400, "empty"),
    (b"\xff\xfe", "application/json", 400, "UTF-8"),
    (b"{}", "application/xml", 415, "unsupported content type"),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).encode(),
     "application/json", 400, "does not match"),
    (json.dumps(service("Bad_Name")).encode(), "application/json", 422, "metadata.name"),
])
async def test_bad_input_is_a_clear_status(api: httpx.AsyncClient, body: bytes, ctype: str, code: int,
                                           needle: str) -> None:
    r = await api.post(SVC_PATH, content=body, headers={"Content-Type": ctype})
    assert r.status_code == code
    status = r.json()
    assert status["kind"] == "Status" and needle in status["message"]
    assert (await api.get(SVC_PATH)).json()["items"] == []


async def test_huge_body_is_413(api: httpx.AsyncClient) -> None:
    big = service()
    big["metadata"]["annotations"] = {"x": "a" * (4 * 1024 * 1024)}
    r = await api.post(SVC_PATH, json=big)
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"


async def test_unknown_namespace_and_kind(api: httpx.AsyncClient) -> None:
    r = await api.post("/apis/serving.knative.dev/v1/namespaces/ghost/services", json=service())
    assert r.status_code == 404 and 'namespaces "ghost" not found' in r.json()["message"]
    r = await api.get("/apis/serving.knative.dev/v1/namespaces/default/widgets")
    assert r.status_code == 404 and r.json()["kind"] == "Status"


async def test_users_cannot_create_revisions(api: httpx.AsyncClient) -> None:
    rev = {"apiVersion": "serving.knative.dev/v1", "kind": "Revision", "metadata": {"name": "r"},
           "spec": {"containers": [{"image": "x"}]}}
    r = await api.post("/apis/serving.knative.dev/v1/namespaces/default/revisions", json=rev)
    assert r.status_code == 405


async def test_revision_spec_is_immutable(api: httpx.AsyncClient) -> None:
    await api.post(SVC_PATH, json=service())
    path = "/apis/serving.knative.dev/v1/namespaces/default/revisions/hello-00001"
    for _ in range(50):
        if (await api.get(path)).status_code == 200:
            break
        await asyncio.sleep(0.02)
    r = await api.patch(path, content=json.dumps({"spec": {"containerConcurrency": 5}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 422 and "Immutable" in r.json()["message"]
    r = await api.patch(path, content=json.dumps({"metadata": {"labels": {"ok": "yes"}}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200


async def test_label_selector_and_dry_run(api: httpx.AsyncClient) -> None:
    a = service("a")
    a["metadata"]["labels"] = {"tier": "web"}
    await api.post(SVC_PATH, json=a)
    await api.post(SVC_PATH, json=service("b"))
    r = await api.get(SVC_PATH, params={"labelSelector": "tier=web"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["a"]
    r = await api.get(SVC_PATH, params={"labelSelector": "tier in (web"})
    assert r.status_code == 400
    r = await api.post(SVC_PATH, params={"dryRun": "All"}, json=service("c"))
    assert r.status_code == 201 and (await api.get(f"{SVC_PATH}/c")).status_code == 404


async def test_watch_streams_and_resumes(api: httpx.AsyncClient) -> None:
    created = (await api.post(SVC_PATH, json=service("w1"))).json()
    rv = created["metadata"]["resourceVersion"]
    await api.post(SVC_PATH, json=service("w2"))
    events = []
    async with api.stream("GET", SVC_PATH, params={"watch": "true", "resourceVersion": rv}) as resp:
        assert resp.status_code == 200
        lines = resp.aiter_lines()
        events.append(json.loads(await asyncio.wait_for(lines.__anext__(), 2)))
        assert (events[0]["type"], events[0]["object"]["metadata"]["name"]) in {("ADDED", "w2"),
                                                                               ("MODIFIED", "w1")}
        await api.delete(f"{SVC_PATH}/w1")
        while True:
            event = json.loads(await asyncio.wait_for(lines.__anext__(), 2))
            if event["type"] == "DELETED":
                assert event["object"]["metadata"]["name"] == "w1"
                break


async def test_cascade_through_api(api: httpx.AsyncClient) -> None:
    await api.post(SVC_PATH, json=service())
    cfg_path = "/apis/serving.knative.dev/v1/namespaces/default/configurations/hello"
    for _ in range(100):
        if (await api.get(cfg_path)).status_code == 200:
            break
        await asyncio.sleep(0.02)
    await api.delete(f"{SVC_PATH}/hello")
    assert (await api.get(cfg_path)).status_code == 404
    revs = (await api.get("/apis/serving.knative.dev/v1/namespaces/default/revisions")).json()
    assert revs["items"] == []


async def test_kubectl_table_printing(api: httpx.AsyncClient) -> None:
    await api.post(SVC_PATH, json=service())
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = (await api.get(SVC_PATH, headers={"Accept": accept})).json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "URL", "LatestCreated", "LatestReady", "Ready", "Reason", "Age"]
    row = table["rows"][0]
    assert row["cells"][0] == "hello" and row["object"]["metadata"]["name"] == "hello"
    assert row["cells"][1].startswith("http://hello.default.localhost:")
    assert row["cells"][-1].endswith("s")  # an age like "0s", rendered by the server
    one = (await api.get(f"{SVC_PATH}/hello", headers={"Accept": accept})).json()
    assert one["kind"] == "Table" and len(one["rows"]) == 1
    ns = (await api.get("/api/v1/namespaces", headers={"Accept": accept})).json()
    assert [c["name"] for c in ns["columnDefinitions"]] == ["Name", "Age"]


async def test_kubectl_watch_gets_one_row_tables(api: httpx.AsyncClient) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with api.stream("GET", SVC_PATH, params={"watch": "true"}, headers={"Accept": accept}) as resp:
        await api.post(SVC_PATH, json=service("watched"))
        event = json.loads(await asyncio.wait_for(resp.aiter_lines().__anext__(), 2))
    assert event["type"] == "ADDED" and event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][0] == "watched"
