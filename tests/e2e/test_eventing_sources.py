"""Sources end to end: PingSource on a real schedule, ApiServerSource, ContainerSource via a Broker."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import eventing_support
from tests.e2e.conftest import WispServer, wait_until
from tests.e2e.eventing_support import Step, apply, get, ready

pytestmark = pytest.mark.e2e
steps = eventing_support.steps  # the step-process fixture
SOURCES = "sources.knative.dev/v1"


def test_ping_every_second_arrives_on_time_with_knative_attributes(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    sink = steps("ping", "record")
    apply(wisp_server, {"apiVersion": SOURCES, "kind": "PingSource", "metadata": {"name": "tick"},
                        "spec": {"schedule": "* * * * * *", "data": '{"hello":"ping"}',
                                 "contentType": "application/json", "sink": sink.dest,
                                 "ceOverrides": {"extensions": {"team": "core"}}}})
    wait_until(lambda: ready(get(wisp_server, "pingsources", "tick", SOURCES)), 10, what="pingsource ready")
    wait_until(lambda: len(sink.records()) >= 3, 8, what="three pings")
    got = sink.records()[:3]
    headers = [r["headers"] for r in got]
    assert {h["ce-type"] for h in headers} == {"dev.knative.sources.ping"}
    assert {h["ce-source"] for h in headers} == {"/apis/v1/namespaces/default/pingsources/tick"}
    assert {h["ce-team"] for h in headers} == {"core"}
    assert len({h["ce-id"] for h in headers}) == 3
    assert json.loads(got[0]["body"]) == {"hello": "ping"}
    ticks = [time.mktime(time.strptime(h["ce-time"], "%Y-%m-%dT%H:%M:%SZ")) for h in headers]
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1.0, 1.0]  # one per second, none twice


def test_bad_schedule_and_timezone_are_rejected_at_create_time(wisp_server: WispServer) -> None:
    for spec, fragment in (({"schedule": "every minute"}, "spec.schedule"),
                           ({"timezone": "Mars/Base"}, "spec.timezone")):
        body = {"apiVersion": SOURCES, "kind": "PingSource", "metadata": {"name": "bad"},
                "spec": {**spec, "sink": {"uri": "http://127.0.0.1:1/"}}}
        resp = httpx.post(f"{wisp_server.api}/apis/{SOURCES}/namespaces/default/pingsources", json=body)
        assert resp.status_code == 422, resp.text
        assert fragment in resp.text


def test_apiserversource_reports_service_add_and_delete(wisp_server: WispServer,
                                                       steps: Callable[[str, str], Step]) -> None:
    sink = steps("api", "record")
    apply(wisp_server, {"apiVersion": SOURCES, "kind": "ApiServerSource", "metadata": {"name": "watch"},
                        "spec": {"mode": "Reference", "sink": sink.dest,
                                 "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                                "selector": {"matchLabels": {"watch": "yes"}}},
                                               {"apiVersion": "serving.knative.dev/v1", "kind": "Service"}]}})
    wait_until(lambda: ready(get(wisp_server, "apiserversources", "watch", SOURCES)), 10, what="source ready")
    apply(wisp_server, {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "hello"},
                        "spec": {"template": {"spec": {"containers": [{"command": ["sleep", "60"]}]}}}},
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}, "data": {"a": "b"}})
    wisp_server.cli("delete", "ksvc", "hello")

    def types() -> list[tuple[str, str]]:
        return [(r["headers"]["ce-type"], json.loads(r["body"])["name"]) for r in sink.records()]
    wait_until(lambda: ("dev.knative.apiserver.ref.delete", "hello") in types(), 10, what="delete event")
    got = types()
    assert got[0] == ("dev.knative.apiserver.ref.add", "hello")
    assert all(name == "hello" for _, name in got)  # the unlabelled ConfigMap was filtered out
    first = sink.records()[0]["headers"]
    assert first["ce-subject"] == "/apis/serving.knative.dev/v1/namespaces/default/services/hello"
    assert first["ce-kind"] == "Service"


PRODUCER = r'''
import json, os, time, urllib.request, urllib.parse
sink = urllib.parse.urlsplit(os.environ["K_SINK"])
overrides = json.loads(os.environ.get("K_CE_OVERRIDES") or "{}").get("extensions", {})
for i in range(1000):
    headers = {"ce-specversion": "1.0", "ce-id": f"c{i}", "ce-source": "/producer", "ce-type": "made.by.program",
               "content-type": "application/json", "host": sink.netloc,
               **{"ce-" + k: v for k, v in overrides.items()}}
    url = f"http://127.0.0.1:{os.environ['INGRESS_PORT']}{sink.path}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b'{"n":%d}' % i, headers=headers), timeout=5)
    except Exception as e:
        print("send failed", e, flush=True)
    time.sleep(0.2)
'''


def test_containersource_program_reads_k_sink_and_events_arrive_through_a_broker(
        wisp_server: WispServer, steps: Callable[[str, str], Step], tmp_path: Path) -> None:
    sink = steps("cs", "record")
    program = tmp_path / "producer.py"
    program.write_text(PRODUCER)
    broker_ref = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}
    container: dict[str, Any] = {"command": [sys.executable, str(program)],
                                 "env": [{"name": "INGRESS_PORT", "value": str(wisp_server.ingress_port)}]}
    apply(wisp_server,
          {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}},
          {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger", "metadata": {"name": "to-sink"},
           "spec": {"broker": "default", "filter": {"attributes": {"type": "made.by.program"}},
                    "subscriber": sink.dest}},
          {"apiVersion": SOURCES, "kind": "ContainerSource", "metadata": {"name": "prog"},
           "spec": {"template": {"spec": {"containers": [container]}}, "sink": broker_ref,
                    "ceOverrides": {"extensions": {"origin": "container"}}}})
    wait_until(lambda: len(sink.records()) >= 2, 20, what="program events through the broker")
    first = sink.records()[0]["headers"]
    assert first["ce-source"] == "/producer" and first["ce-origin"] == "container"
    obj = get(wisp_server, "containersources", "prog", SOURCES)
    assert obj["status"]["sinkUri"].endswith("/default/default")
    wait_until(lambda: ready(get(wisp_server, "containersources", "prog", SOURCES)), 10, what="source ready")


def test_cli_creates_sources_and_flows_and_lists_auto_created_event_types(
        wisp_server: WispServer, steps: Callable[[str, str], Step]) -> None:
    sink = steps("cli", "record")
    wisp_server.cli("source", "ping", "create", "p1", "--sink", sink.dest["uri"], "--schedule", "*/2 * * * * *")
    assert "p1" in wisp_server.cli("source", "ping", "list").stdout
    bad = wisp_server.cli("source", "ping", "create", "p2", "--sink", sink.dest["uri"], "--timezone", "X/Y",
                          check=False)
    assert bad.returncode != 0 and "time zone" in bad.stderr
    wisp_server.cli("sequence", "create", "s1", "--step", sink.dest["uri"])
    wait_until(lambda: "True" in wisp_server.cli("sequence", "list").stdout, 10, what="sequence listed ready")

    apply(wisp_server, {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                        "metadata": {"name": "default",
                                     "annotations": {"eventing.knative.dev/eventtype-auto-create": "true"}}})
    wait_until(lambda: ready(get(wisp_server, "brokers", "default", "eventing.knative.dev/v1")), 10, what="broker")
    headers = {"host": "broker-ingress.localhost", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/shop",
               "ce-type": "order.placed"}
    assert httpx.post(f"http://127.0.0.1:{wisp_server.ingress_port}/default/default", headers=headers).status_code \
        == 202
    wait_until(lambda: "order.placed" in wisp_server.cli("eventtype", "list").stdout, 10, what="event type")
    assert "/shop" in wisp_server.cli("eventtype", "list", "--broker", "default").stdout
    wisp_server.cli("source", "ping", "delete", "p1")
