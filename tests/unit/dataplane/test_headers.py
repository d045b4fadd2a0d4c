"""Forwarding headers, hop-by-hop removal and framing — the rules the app relies on."""

from __future__ import annotations

import re

import pytest

from wisp.dataplane.headers import (
    FRAME_CHUNKED,
    FRAME_CLOSE,
    FRAME_LENGTH,
    FRAME_NONE,
    build_forwarded,
    build_response_head,
    build_upstream_head,
    host_key,
    new_traceparent,
    normalize_host,
)


def parse(head: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    assert lines[-2:] == ["", ""], "head must end with an empty line"
    pairs = [tuple(line.split(": ", 1)) for line in lines[1:-2]]
    return lines[0].encode(), pairs  # type: ignore[return-value]


def values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k.lower() == name]


@pytest.mark.parametrize(("raw", "key"), [
    ("Hello.Default.LocalHost", "hello.default.localhost"),
    ("hello.default.localhost:8080", "hello.default.localhost"),
    ("hello.default.localhost.", "hello.default.localhost"),
    ("[::1]:8080", "[::1]"),
    ("127.0.0.1:80", "127.0.0.1"),
])
def test_normalize_host(raw: str, key: str) -> None:
    assert normalize_host(raw) == key
    assert host_key(raw.encode()) == key


def test_forwarding_headers_for_a_plain_request() -> None:
    line, pairs = parse(build_upstream_head(b"GET", b"/a?b=c", [(b"Host", b"svc.ns.localhost:8080")],
                                            "10.0.0.7", chunked=False))
    assert line == b"GET /a?b=c HTTP/1.1"
    assert values(pairs, "host") == ["svc.ns.localhost:8080"]
    assert values(pairs, "x-forwarded-for") == ["10.0.0.7"]
    assert values(pairs, "x-forwarded-proto") == ["http"]
    assert values(pairs, "forwarded") == ['for=10.0.0.7;host="svc.ns.localhost:8080";proto=http']
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", values(pairs, "traceparent")[0])


def test_existing_forwarding_headers_are_extended_not_replaced() -> None:
    headers = [(b"host", b"h"), (b"X-Forwarded-For", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"),
               (b"X-Forwarded-Proto", b"https"), (b"Forwarded", b"for=9.9.9.9"),
               (b"traceparent", b"00-0123456789abcdef0123456789abcdef-0123456789abcdef-00")]
    _, pairs = parse(build_upstream_head(b"GET", b"/", headers, "3.3.3.3", chunked=False))
    assert values(pairs, "x-forwarded-for") == ["1.1.1.1, 2.2.2.2, 3.3.3.3"]
    assert values(pairs, "x-forwarded-proto") == ["https"]
    assert values(pairs, "forwarded") == ["for=9.9.9.9"]
    assert values(pairs, "traceparent") == ["00-0123456789abcdef0123456789abcdef-0123456789abcdef-00"]


def test_forwarded_synthesised_from_xff_chain_with_ipv6_quoted() -> None:
    _, pairs = parse(build_upstream_head(b"GET", b"/", [(b"Host", b"h"), (b"X-Forwarded-For", b"2001:db8::1")],
                                         "::1", chunked=False))
    assert values(pairs, "forwarded") == ['for="[2001:db8::1]";host=h;proto=http, for="[::1]"']
    assert build_forwarded(["1.2.3.4"], 'we"ird', "http") == 'for=1.2.3.4;host="we\\"ird";proto=http'


def test_internal_and_hop_by_hop_headers_are_removed() -> None:
    headers = [(b"Host", b"h"), (b"Knative-Serving-Revision", b"r"), (b"KNATIVE-SERVING-NAMESPACE", b"n"),
               (b"Connection", b"keep-alive, X-Private"), (b"X-Private", b"s"), (b"Keep-Alive", b"timeout=5"),
               (b"TE", b"trailers"), (b"Proxy-Authorization", b"x"), (b"X-App", b"kept"),
               (b"Knative-Serving-Tag", b"canary")]
    _, pairs = parse(build_upstream_head(b"GET", b"/", headers, "1.2.3.4", chunked=False))
    names = {k.lower() for k, _ in pairs}
    for gone in ("knative-serving-revision", "knative-serving-namespace", "connection", "x-private",
                 "keep-alive", "te", "proxy-authorization"):
        assert gone not in names
    assert values(pairs, "x-app") == ["kept"]
    assert values(pairs, "knative-serving-tag") == ["canary"]


def test_k_original_host_is_restored_as_host() -> None:
    headers = [(b"Host", b"activator.internal"), (b"K-Original-Host", b"app.example.com")]
    _, pairs = parse(build_upstream_head(b"GET", b"/", headers, "1.2.3.4", chunked=False))
    assert values(pairs, "host") == ["app.example.com"]
    assert values(pairs, "k-original-host") == []


def test_request_framing_is_restated() -> None:
    chunked = [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")]
    _, pairs = parse(build_upstream_head(b"POST", b"/", chunked, "1.2.3.4", chunked=True))
    assert values(pairs, "transfer-encoding") == ["chunked"]
    _, pairs = parse(build_upstream_head(b"POST", b"/", [(b"Host", b"h"), (b"Content-Length", b"5")],
                                         "1.2.3.4", chunked=False))
    assert values(pairs, "content-length") == ["5"]
    _, pairs = parse(build_upstream_head(b"GET", b"/ws", [(b"Host", b"h"), (b"Upgrade", b"websocket"),
                                                          (b"Connection", b"Upgrade")],
                                         "1.2.3.4", chunked=False, upgrade=b"websocket"))
    assert values(pairs, "upgrade") == ["websocket"] and values(pairs, "connection") == ["Upgrade"]


def test_traceparent_ids_are_random() -> None:
    assert len({new_traceparent() for _ in range(100)}) == 100


@pytest.mark.parametrize(("headers", "has_body", "http10", "mode", "eof_ends"), [
    ([(b"Content-Length", b"3")], True, False, FRAME_LENGTH, False),
    ([(b"Transfer-Encoding", b"chunked")], True, False, FRAME_CHUNKED, False),
    ([], True, False, FRAME_CHUNKED, True),        # read-until-close re-chunked for 1.1 clients
    ([], True, True, FRAME_CLOSE, True),           # and close-delimited for 1.0 clients
    ([(b"Content-Length", b"3")], False, False, FRAME_NONE, False),  # HEAD / 204 / 304
])
def test_response_framing(headers, has_body, http10, mode, eof_ends) -> None:
    head, got_mode, got_eof = build_response_head(200, b"OK", [(b"Server", b"x"), *headers],
                                                  has_body=has_body, keep_alive=True, http10=http10)
    assert (got_mode, got_eof) == (mode, eof_ends)
    _, pairs = parse(head)
    assert (values(pairs, "transfer-encoding") == ["chunked"]) == (mode == FRAME_CHUNKED)
    assert (values(pairs, "connection") == ["close"]) == (mode == FRAME_CLOSE)


def test_response_hop_by_hop_removed_and_te_beats_content_length() -> None:
    head, mode, _ = build_response_head(
        200, b"OK", [(b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"), (b"Keep-Alive", b"timeout=5"),
                     (b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"10"), (b"X-App", b"y")],
        has_body=True, keep_alive=False, http10=False)
    _, pairs = parse(head)
    assert {k.lower() for k, _ in pairs} == {"x-app", "transfer-encoding", "connection"}
    assert values(pairs, "connection") == ["close"] and mode == FRAME_CHUNKED
