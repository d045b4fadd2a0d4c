"""Channels, Subscriptions, Sequence and Parallel end to end: `wisp serve` plus real step processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e import eventing_support
from tests.e2e.conftest import WispServer, wait_until
from tests.e2e.eventing_support import Step, apply, get, ready

pytestmark = pytest.mark.e2e

steps = eventing_support.steps  # the step-process fixture


def post(server: WispServer, url: str, id_: str, type_: str, data: dict[str, Any] | None = None) -> httpx.Response:
    parts = httpx.URL(url)
    headers = {"host": parts.host, "ce-specversion": "1.0", "ce-id": id_, "ce-source": "/e2e", "ce-type": type_,
               "content-type": "application/json"}
    return httpx.post(f"http://127.0.0.1:{server.ingress_port}{parts.path}", headers=headers,
                      content=json.dumps(data or {}))


def test_three_step_sequence_transforms_step_by_step_and_delivers_the_final_reply(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    a, b, c, final = steps("a", "append:a"), steps("b", "append:b"), steps("c", "append:c"), steps("final", "record")
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": {"name": "seq"},
                        "spec": {"steps": [a.dest, b.dest, c.dest], "reply": final.dest}})
    seq = wait_until(lambda: (s := get(wisp_server, "sequences", "seq")) and ready(s) and s, 15, what="sequence ready")
    url = seq["status"]["address"]["url"]
    assert "/default/channels/seq-kn-sequence-0" in url

    assert post(wisp_server, url, "e1", "order.created", {"trail": []}).status_code == 202
    wait_until(final.records, 10, what="final reply")
    got = final.records()
    assert [json.loads(r["body"])["trail"] for r in got] == [["a", "b", "c"]]
    assert got[0]["headers"]["ce-type"] == "order.created"
    assert json.loads(b.records()[0]["body"])["trail"] == ["a"]  # step 2 saw step 1's output

    # Deleting the Sequence deletes the channels and subscriptions it built.
    wisp_server.cli("delete", "sequences", "seq")
    wait_until(lambda: not get(wisp_server, "channels", "seq-kn-sequence-0", "messaging.knative.dev/v1"), 10,
               what="owned channel deleted")


def test_parallel_delivers_to_the_matching_branch_only(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    fa, fb = steps("fa", "filter:type.a"), steps("fb", "filter:type.b")
    sa, sb = steps("sa", "record"), steps("sb", "record")
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Parallel", "metadata": {"name": "par"},
                        "spec": {"branches": [{"filter": fa.dest, "subscriber": sa.dest},
                                              {"filter": fb.dest, "subscriber": sb.dest}]}})
    par = wait_until(lambda: (p := get(wisp_server, "parallels", "par")) and ready(p) and p, 15, what="parallel ready")
    url = par["status"]["address"]["url"]
    for i, type_ in enumerate(("type.a", "type.b", "type.a")):
        assert post(wisp_server, url, f"p{i}", type_).status_code == 202
    wait_until(lambda: len(sa.records()) == 2 and len(sb.records()) == 1, 10, what="branch deliveries")
    assert [r["headers"]["ce-id"] for r in sa.records()] == ["p0", "p2"] or \
        sorted(r["headers"]["ce-id"] for r in sa.records()) == ["p0", "p2"]
    assert [r["headers"]["ce-id"] for r in sb.records()] == ["p1"]
    assert len(fa.records()) == 3 and len(fb.records()) == 3  # every filter saw every event


def test_failing_step_is_retried_then_dead_lettered(wisp_server: WispServer,
                                                    steps: Callable[[str, str], Step]) -> None:
    bad, dls, final = steps("bad", "fail"), steps("dls", "record"), steps("final2", "record")
    delivery = {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.05S", "deadLetterSink": dls.dest}
    apply(wisp_server, {"apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "metadata": {"name": "broken"},
                        "spec": {"steps": [{**bad.dest, "delivery": delivery}], "reply": final.dest}})
    seq = wait_until(lambda: (s := get(wisp_server, "sequences", "broken")) and ready(s) and s, 15, what="ready")
    assert post(wisp_server, seq["status"]["address"]["url"], "x1", "t").status_code == 202
    wait_until(dls.records, 10, what="dead-lettered event")
    assert len(bad.records()) == 3  # first attempt + 2 retries
    dead = dls.records()[0]["headers"]
    assert dead["ce-id"] == "x1"
    assert dead["ce-knativeerrorcode"] == "500"
    assert dead["ce-knativeerrordest"] == bad.dest["uri"]
    assert final.records() == []


def test_channel_ingress_status_codes(wisp_server: WispServer) -> None:
    apply(wisp_server, {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel",
                        "metadata": {"name": "imc"}})
    ch = wait_until(lambda: (c := get(wisp_server, "inmemorychannels", "imc", "messaging.knative.dev/v1"))
                    and ready(c) and c, 10, what="channel ready")
    url = httpx.URL(ch["status"]["address"]["url"])
    base = f"http://127.0.0.1:{wisp_server.ingress_port}"
    assert post(wisp_server, str(url), "ok", "t").status_code == 202
    assert httpx.get(base + url.path, headers={"host": url.host}).status_code == 405
    assert httpx.post(base + url.path, headers={"host": url.host}, content=b"{}").status_code == 400
    missing = str(url).replace("/imc", "/nope")
    assert post(wisp_server, missing, "x", "t").status_code == 404
