"""Eventing end to end: `wisp serve`, real subscriber processes, real sockets, SIGKILL recovery."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import WispServer, wait_until
from tests.e2e.eventing_support import RECEIVER_PRELUDE, Receiver, receivers

pytestmark = pytest.mark.e2e

# A subscriber: appends {"path", "headers", "body", "t"} per request to a file and answers by mode:
#   ok      202
#   fail    500 with body "nope"
#   reply   200 + a binary-mode reply event of type argv[4] (ce-id = "reply-" + incoming id)
#   text    200 with a plain-text body (not a CloudEvent)
SUBSCRIBER = RECEIVER_PRELUDE + r'''
reply_type = sys.argv[4] if len(sys.argv) > 4 else "reply"

class H(Answering):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.record({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                     "body": body.decode("utf-8", "replace"), "t": time.monotonic()})
        if mode == "fail":
            self._answer(500, {}, b"nope")
        elif mode == "reply":
            rid = "reply-" + self.headers.get("ce-id", "")
            self._answer(200, {"ce-specversion": "1.0", "ce-id": rid, "ce-source": "/replier",
                               "ce-type": reply_type, "content-type": "application/json"}, b'{"r":1}')
        elif mode == "text":
            self._answer(200, {"content-type": "text/plain"}, b"thanks")
        else:
            self._answer(202, {}, b"")

Server.request_queue_size = 1024
Server(("127.0.0.1", port), H).serve_forever()
'''


class Subscriber(Receiver):
    def __init__(self, tmp: Path, name: str, mode: str, *extra: str) -> None:
        super().__init__(tmp, name, SUBSCRIBER, "subscriber.py", mode, *extra)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def ids(self) -> list[str]:
        return [str(r["headers"].get("ce-id")) for r in self.records()]


@pytest.fixture
def subscribers(tmp_path: Path) -> Iterator[Callable[..., Subscriber]]:
    def start(name: str, mode: str = "ok", *extra: str) -> Subscriber:
        return Subscriber(tmp_path, name, mode, *extra)

    yield from receivers(start)


def ingress(server: WispServer, broker: str = "default", ns: str = "default") -> tuple[str, dict[str, str]]:
    return f"http://127.0.0.1:{server.ingress_port}/{ns}/{broker}", {"host": "broker-ingress.localhost"}


def send(server: WispServer, id_: str, type_: str, *, structured: bool = False, broker: str = "default",
         extra: dict[str, str] | None = None) -> httpx.Response:
    url, headers = ingress(server, broker)
    if structured:
        body = json.dumps({"specversion": "1.0", "id": id_, "source": "/test", "type": type_,
                           "datacontenttype": "application/json", "data": {"id": id_}, **(extra or {})})
        headers = {**headers, "content-type": "application/cloudevents+json"}
        return httpx.post(url, content=body, headers=headers)
    headers = {**headers, "ce-specversion": "1.0", "ce-id": id_, "ce-source": "/test", "ce-type": type_,
               "content-type": "application/json", **{f"ce-{k}": v for k, v in (extra or {}).items()}}
    return httpx.post(url, content=json.dumps({"id": id_}), headers=headers)


def setup_broker(server: WispServer, *args: str) -> None:
    server.cli("broker", "create", "default", *args)


def trigger(server: WispServer, name: str, sink: str, *args: str) -> None:
    server.cli("trigger", "create", name, "--broker", "default", "--sink", sink, "--wait", *args)


def test_subscriber_gets_exactly_the_matching_events_in_both_modes(
        wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    sub = subscribers("sub")
    setup_broker(wisp_server)
    trigger(wisp_server, "match", sub.url, "--filter", "type=t.match")
    trigger(wisp_server, "cesql", sub.url + "cesql", "--filters-cesql", "type LIKE 't.c%' AND id <> 'c2'")
    for i in range(5):
        assert send(wisp_server, f"b{i}", "t.match").status_code == 202
        assert send(wisp_server, f"s{i}", "t.match", structured=True).status_code == 202
        assert send(wisp_server, f"n{i}", "t.other", structured=i % 2 == 0).status_code == 202
    for i in range(3):
        assert send(wisp_server, f"c{i}", "t.cesql").status_code == 202
    expected = {f"{p}{i}" for p in "bs" for i in range(5)} | {"c0", "c1"}
    wait_until(lambda: len(sub.records()) >= len(expected))
    time.sleep(0.5)  # anything extra would have arrived by now
    records = sub.records()
    assert sorted(sub.ids()) == sorted(expected)
    by_id = {r["headers"]["ce-id"]: r for r in records}  # type: ignore[index]
    assert json.loads(by_id["s3"]["body"]) == {"id": "s3"}  # type: ignore[arg-type]
    assert by_id["s3"]["headers"]["prefer"] == "reply"  # type: ignore[index]
    assert "ce-knativearrivaltime" in by_id["b1"]["headers"]  # type: ignore[operator]
    assert by_id["c0"]["path"] == "/cesql"


def test_bad_input_gets_the_right_status_and_nothing_is_delivered(
        wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    sub = subscribers("sub")
    setup_broker(wisp_server)
    trigger(wisp_server, "all", sub.url)
    url, host = ingress(wisp_server)
    ce = {**host, "ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
    structured = {**host, "content-type": "application/cloudevents+json"}
    cases = [
        (httpx.post(url, content=b"\x00garbage{", headers=structured), 400),
        (httpx.post(url, content=b"{}", headers={**host, "content-type": "application/json"}), 400),
        (httpx.post(url, content=b"x", headers={**host, "content-type": "application/cloudevents+xml"}), 415),
        (httpx.post(url, content=b"x", headers={**ce, "ce-id": "%C0%A0"}), 400),
        (httpx.post(url, content=b"x", headers={**ce, "ce-id": "%E2%82"}), 400),
        (httpx.post(url.replace("/default/default", "/default/missing"), content=b"x", headers=ce), 404),
        (httpx.get(url, headers=host), 405),
        (httpx.post(url, content=b"x" * (10 * 1024 * 1024), headers=ce, timeout=30), 413),
    ]
    for resp, status in cases:
        assert resp.status_code == status, (resp.status_code, resp.text)
    options = httpx.options(url, headers={**host, "webhook-request-origin": "me.example"})
    assert options.headers["webhook-allowed-origin"] == "me.example"
    assert send(wisp_server, "good", "t").status_code == 202  # still up
    wait_until(lambda: sub.ids() == ["good"])
    time.sleep(0.3)
    assert sub.ids() == ["good"]


def test_failing_subscriber_is_retried_with_backoff_then_dead_lettered(
        wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    failing, dls = subscribers("failing", "fail"), subscribers("dls")
    setup_broker(wisp_server)
    trigger(wisp_server, "t", failing.url, "--retry", "3", "--backoff-policy", "linear",
            "--backoff-delay", "PT0.2S", "--dls", dls.url)
    assert send(wisp_server, "e1", "t.fail").status_code == 202
    wait_until(lambda: len(dls.records()) == 1)
    attempts = [float(r["t"]) for r in failing.records()]  # type: ignore[arg-type]
    assert len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    for gap, want in zip(gaps, (0.2, 0.4, 0.6), strict=True):  # linear, first retry n = 1
        assert want - 0.05 <= gap <= want + 0.5, gaps
    headers = dls.records()[0]["headers"]
    assert headers["ce-id"] == "e1"  # type: ignore[index]
    assert headers["ce-knativeerrordest"] == failing.url  # type: ignore[index]
    assert headers["ce-knativeerrorcode"] == "500"  # type: ignore[index]
    assert base64.b64decode(headers["ce-knativeerrordata"]) == b"nope"  # type: ignore[index]


def test_replies_reenter_the_broker_and_ttl_stops_a_loop(
        wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    replier, sink = subscribers("replier", "reply", "t.response"), subscribers("sink")
    looper = subscribers("looper", "reply", "t.loop")
    setup_broker(wisp_server)
    trigger(wisp_server, "ask", replier.url, "--filter", "type=t.request")
    trigger(wisp_server, "answers", sink.url, "--filter", "type=t.response")
    trigger(wisp_server, "loop", looper.url, "--filter", "type=t.loop")
    assert send(wisp_server, "q1", "t.request").status_code == 202
    wait_until(lambda: sink.ids() == ["reply-q1"])
    assert send(wisp_server, "l", "t.loop", extra={"knativebrokerttl": "5"}).status_code == 202
    wait_until(lambda: len(looper.records()) >= 4)
    time.sleep(0.5)
    # ttl 5 → stored 4 → reply stored 3 → 2 → 1; the fifth hop would be 0 and is refused.
    assert looper.ids() == ["l", "reply-l", "reply-reply-l", "reply-reply-reply-l"]
    assert all("ce-knativebrokerttl" not in r["headers"] for r in looper.records())  # type: ignore[operator]


def test_non_cloudevent_200_is_success_without_retry(
        wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    text = subscribers("text", "text")
    setup_broker(wisp_server)
    trigger(wisp_server, "t", text.url, "--retry", "3")
    assert send(wisp_server, "x", "t").status_code == 202
    wait_until(lambda: text.ids() == ["x"])
    time.sleep(0.5)
    assert text.ids() == ["x"]


async def _send_many(server: WispServer, n: int) -> list[str]:
    url, host = ingress(server)
    accepted: list[str] = []
    sem = asyncio.Semaphore(50)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as client:
        async def one(i: int) -> None:
            headers = {**host, "ce-specversion": "1.0", "ce-id": f"k{i}", "ce-source": "/kill", "ce-type": "t"}
            async with sem:
                resp = await client.post(url, content=b"{}", headers={**headers, "content-type": "application/json"})
            if resp.status_code == 202:
                accepted.append(f"k{i}")
        await asyncio.gather(*(one(i) for i in range(n)))
    return accepted


def test_kill_9_after_accept_loses_nothing(wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    sub = subscribers("sub")
    setup_broker(wisp_server)
    trigger(wisp_server, "all", sub.url, "--retry", "20", "--backoff-policy", "linear", "--backoff-delay", "PT0.1S")
    accepted = asyncio.run(_send_many(wisp_server, 1000))
    wisp_server.stop(signal.SIGKILL)
    assert len(accepted) == 1000
    wisp_server.start()
    wait_until(lambda: set(accepted) <= set(sub.ids()), 60)


def test_cli_send_and_watch(wisp_server: WispServer, subscribers: Callable[..., Subscriber]) -> None:
    sub = subscribers("sub")
    setup_broker(wisp_server)
    trigger(wisp_server, "all", sub.url)
    watch = subprocess.Popen([sys.executable, "-m", "wisp", "event", "watch", "--broker", "default", "--count", "2",
                              "--timeout", "20"], env=wisp_server.env(), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        wisp_server.cli("event", "send", "--broker", "default", "--type", "t.cli", "--source", "/me",
                        "--data", '{"a":1}', "--id", "cli-1")
        wisp_server.cli("event", "send", "--broker", "default", "--type", "t.cli", "--data", '{"a":2}',
                        "--id", "cli-2", "--structured")
        out, _ = watch.communicate(timeout=30)
    finally:
        watch.kill()
        watch.wait()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == ["cli-1", "cli-2"]
    wait_until(lambda: sorted(sub.ids()) == ["cli-1", "cli-2"])
    listed = wisp_server.cli("trigger", "list").stdout
    assert "all" in listed and "True" in listed
    assert "broker-ingress.localhost" in wisp_server.cli("broker", "describe", "default").stdout
    wisp_server.cli("trigger", "delete", "all")
    wisp_server.cli("broker", "delete", "default")
    assert "No brokers found" in wisp_server.cli("broker", "list").stderr
