"""Pure header handling for the proxy: hop-by-hop removal, forwarding headers, head serialisation.

Everything here works on raw ``bytes`` exactly as httptools hands them over, so the hot path never
decodes a header it does not need to inspect. The rules follow the Knative runtime contract
(spec serving.md §2 "Headers"): Host unchanged, ``X-Forwarded-For`` appended, ``X-Forwarded-Proto``
and ``Forwarded`` (RFC 7239) set when absent, a W3C ``traceparent`` when absent, and the ingress'
internal headers removed before the application sees the request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from http import HTTPStatus

Header = tuple[bytes, bytes]

# RFC 9110 §7.6.1 plus the de-facto ones Go's ReverseProxy also drops.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Added by an ingress to name the revision; never shown to user code (knative/networking header.go).
INTERNAL = frozenset({b"knative-serving-revision", b"knative-serving-namespace"})
K_ORIGINAL_HOST = b"k-original-host"

# Headers the request builder must look at; everything else is copied verbatim.
_SPECIAL_REQUEST = HOP_BY_HOP | INTERNAL | {
    K_ORIGINAL_HOST, b"host", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"traceparent",
    b"content-length",
}
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REASONS = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}


def normalize_host(value: bytes | str) -> str:
    """The routing key for a Host header: lower-case, port and trailing dot removed.

    ``[::1]:8080`` keeps its brackets so IPv6 literals stay unambiguous.
    """
    host = value.decode("latin-1") if isinstance(value, bytes) else value
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    return host.rstrip(".")


_TOKENS_CACHE: dict[bytes, frozenset[bytes]] = {}
_CONN_BASIC = frozenset({b"close", b"keep-alive", b"upgrade"})


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """The lower-cased tokens of a ``Connection`` header value (memoised: values repeat)."""
    tokens = _TOKENS_CACHE.get(value)
    if tokens is None:
        tokens = frozenset(t.strip().lower() for t in value.split(b",") if t.strip())
        if len(_TOKENS_CACHE) < 1024:
            _TOKENS_CACHE[value] = tokens
    return tokens


def new_traceparent() -> bytes:
    """A fresh W3C trace context (version 00, sampled) with random, non-zero ids.

    ``random`` rather than ``os.urandom``: trace ids need uniqueness, not secrecy, and this runs
    for every request that arrives without one.
    """
    trace, span = _getrandbits(128), _getrandbits(64)
    if not trace or not span:  # all-zero ids are invalid
        return new_traceparent()
    return b"00-%032x-%016x-01" % (trace, span)


_getrandbits = random.getrandbits


def _forwarded_node(node: str) -> str:
    """One RFC 7239 ``for=`` value: IPv6 literals are bracketed and quoted."""
    node = node.strip()
    if ":" in node and not node.startswith('"'):
        inner = node if node.startswith("[") else f"[{node}]"
        return f'"{inner}"'
    return node


def _forwarded_value(value: str) -> str:
    """Quote a Forwarded parameter value unless it is a plain token (``host:port`` is not)."""
    if value and all(c in _TCHAR for c in value.encode("latin-1")):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def build_forwarded(xff_nodes: Sequence[str], host: str, proto: str) -> str:
    """Synthesise ``Forwarded`` like Knative's queue-proxy shim: one ``for=`` element per
    X-Forwarded-For node, with ``host=`` and ``proto=`` on the first element."""
    elements = []
    for i, node in enumerate(xff_nodes):
        elem = f"for={_forwarded_node(node)}"
        if i == 0:
            if host:
                elem += f";host={_forwarded_value(host)}"
            if proto:
                elem += f";proto={_forwarded_value(proto)}"
        elements.append(elem)
    return ", ".join(elements)


def build_upstream_head(
    method: bytes,
    target: bytes,
    headers: Iterable[Header],
    client_ip: str,
    *,
    chunked: bool,
    upgrade: bytes | None = None,
) -> bytes:
    """Serialise the request head sent to an instance (always HTTP/1.1, keep-alive).

    Framing is re-stated explicitly because the body is re-framed: a chunked request is re-chunked,
    a Content-Length request keeps its length. ``upgrade`` keeps ``Connection: Upgrade`` for
    WebSocket pass-through, which is the one hop-by-hop exchange that must cross the proxy.
    """
    prefix, needs_trace = upstream_head_prefix(method, target, headers, client_ip,
                                               chunked=chunked, upgrade=upgrade)
    return finish_upstream_head(prefix, needs_trace)


def finish_upstream_head(prefix: bytes, needs_trace: bool) -> bytes:
    """Close a head from ``upstream_head_prefix``, adding a fresh ``traceparent`` when it had none.

    Split from the prefix so the proxy can reuse the (deterministic) prefix across the identical
    requests a keep-alive client usually sends, while every request still gets its own trace id.
    """
    if needs_trace:
        return b"%straceparent: %s\r\n\r\n" % (prefix, new_traceparent())
    return prefix + b"\r\n"


def upstream_head_prefix(
    method: bytes,
    target: bytes,
    headers: Iterable[Header],
    client_ip: str,
    *,
    chunked: bool,
    upgrade: bytes | None = None,
) -> tuple[bytes, bool]:
    """Every line of the upstream head but a generated ``traceparent`` and the blank line;
    the flag says whether the request lacked a ``traceparent`` (see ``finish_upstream_head``)."""
    out = [method, b" ", target, b" HTTP/1.1\r\n"]
    host = original_host = b""
    xff: list[bytes] = []
    proto = b""
    has_forwarded = has_trace = False
    content_length = b""
    drop: set[bytes] = set()
    for name, value in headers:
        # Most headers are copied verbatim; a length check avoids lower-casing almost all of them.
        if len(name) not in _SPECIAL_REQUEST_LENGTHS:
            out += (name, b": ", value, b"\r\n")
            continue
        lname = name.lower()
        if lname not in _SPECIAL_REQUEST:
            out += (name, b": ", value, b"\r\n")
        elif lname == b"host":
            host = value
        elif lname == b"x-forwarded-for":
            xff.append(value)
        elif lname == b"x-forwarded-proto":
            proto = value
            out += (name, b": ", value, b"\r\n")
        elif lname == b"forwarded":
            has_forwarded = True
            out += (name, b": ", value, b"\r\n")
        elif lname == b"traceparent":
            has_trace = True
            out += (name, b": ", value, b"\r\n")
        elif lname == b"content-length":
            content_length = value
        elif lname == K_ORIGINAL_HOST:
            original_host = value
        elif lname == b"connection":
            drop |= connection_tokens(value)
    if drop and not drop <= _CONN_BASIC:
        out = _drop_listed(out, drop)
    # An activator in front of us moves Host into K-Original-Host; queue-proxy moves it back.
    host = original_host or host
    out[4:4] = [b"Host: ", host, b"\r\n"] if host else []
    out.append(forwarding_headers(b", ".join(xff), client_ip, host, proto, has_forwarded))
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif content_length:
        out += (b"Content-Length: ", content_length, b"\r\n")
    if upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    return b"".join(out), not has_trace


_SPECIAL_REQUEST_LENGTHS = frozenset(len(n) for n in _SPECIAL_REQUEST)
_FORWARDING_CACHE: dict[tuple[bytes, str, bytes, bytes, bool], bytes] = {}


def forwarding_headers(xff: bytes, client_ip: str, host: bytes, proto: bytes, has_forwarded: bool) -> bytes:
    """The X-Forwarded-For / -Proto / Forwarded lines for one request.

    They depend only on (incoming XFF, client address, Host, incoming proto), which repeat across
    requests from the same clients, so the serialised block is memoised (bounded cache).
    """
    key = (xff, client_ip, host, proto, has_forwarded)
    block = _FORWARDING_CACHE.get(key)
    if block is not None:
        return block
    ip = client_ip.encode("latin-1")
    xff_value = xff + b", " + ip if xff else ip
    parts = [b"X-Forwarded-For: ", xff_value, b"\r\n"]
    if not proto:
        proto = b"http"
        parts.append(b"X-Forwarded-Proto: http\r\n")
    if not has_forwarded:
        nodes = xff_value.decode("latin-1").split(",")
        fwd = build_forwarded(nodes, host.decode("latin-1"), proto.decode("latin-1"))
        parts += (b"Forwarded: ", fwd.encode("latin-1"), b"\r\n")
    block = b"".join(parts)
    if len(_FORWARDING_CACHE) >= 4096:
        _FORWARDING_CACHE.clear()
    _FORWARDING_CACHE[key] = block
    return block


def _drop_listed(parts: list[bytes], names: set[bytes]) -> list[bytes]:
    """Remove headers named in ``Connection`` (they are hop-by-hop by declaration)."""
    kept = parts[:4]
    for i in range(4, len(parts), 4):
        if parts[i].lower() not in names:
            kept += parts[i : i + 4]
    return kept


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes = b"") -> bytes:
    """``HTTP/1.1 <code> <reason>\\r\\n``, filling in the standard reason when none is given."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason or _REASONS.get(status, b"Unknown"))
        if len(_STATUS_LINES) < 1024:
            _STATUS_LINES[(status, reason)] = line
    return line


_SPECIAL_RESPONSE_LENGTHS = frozenset(len(n) for n in (*HOP_BY_HOP, b"content-length"))
# How the response body is framed towards the client.
FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_NONE = 0, 1, 2, 3


def build_response_head(
    status: int,
    reason: bytes,
    headers: Iterable[Header],
    *,
    has_body: bool,
    keep_alive: bool,
    http10: bool,
) -> tuple[bytes, int, bool]:
    """Serialise the response head sent to the client and decide its framing.

    Hop-by-hop headers from the instance are dropped. A chunked or read-until-close body is
    re-chunked for HTTP/1.1 clients (so their connection stays reusable) and close-delimited for
    HTTP/1.0 ones. Returns the head, one of the ``FRAME_*`` modes, and whether the instance's
    body ends when it closes the connection (no Content-Length, no Transfer-Encoding).
    """
    out = [status_line(status, reason)]
    drop: set[bytes] = set()
    te = cl = False
    for name, value in headers:
        if len(name) in _SPECIAL_RESPONSE_LENGTHS:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"connection":
                    drop |= connection_tokens(value)
                elif lname == b"transfer-encoding":
                    te = True
                continue
            if lname == b"content-length":
                cl = True
        out += (name, b": ", value, b"\r\n")
    if te and cl:
        drop.add(b"content-length")  # RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
    if drop and not drop <= _CONN_BASIC:
        out = [out[0], *_drop_listed([b"", b"", b"", b"", *out[1:]], drop)[4:]]
    if not has_body:
        mode = FRAME_NONE
    elif cl and not te:
        mode = FRAME_LENGTH
    elif http10:
        mode = FRAME_CLOSE
    else:
        mode = FRAME_CHUNKED
        out.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive or mode == FRAME_CLOSE:
        out.append(b"Connection: close\r\n")
    elif http10:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return b"".join(out), mode, has_body and not te and not cl


def build_interim_head(
    status: int, reason: bytes, headers: Iterable[Header], upgrade: bytes | None = None,
) -> bytes:
    """A 1xx head (100 Continue, 103 Early Hints, or 101 with its Upgrade headers restored)."""
    out = [status_line(status, reason)]
    for name, value in headers:
        if name.lower() not in HOP_BY_HOP:
            out += (name, b": ", value, b"\r\n")
    if upgrade is not None:
        out += (b"Connection: Upgrade\r\nUpgrade: ", upgrade, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def header_value(headers: Iterable[Header], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case) in a raw header list."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def simple_response(status: int, body: bytes, *, keep_alive: bool, extra: Sequence[Header] = ()) -> bytes:
    """A complete plain-text response generated by the proxy itself (404, 502, 504 …)."""
    out = [status_line(status)]
    for name, value in extra:
        out += (name, b": ", value, b"\r\n")
    out.append(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(body))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out += (b"\r\n", body)
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    """One chunk of chunked transfer-encoding."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


_HOST_CACHE: dict[bytes, str] = {}


def host_key(value: bytes) -> str:
    """``normalize_host`` memoised for the hot path (a bounded cache: cleared when it grows large)."""
    key = _HOST_CACHE.get(value)
    if key is None:
        if len(_HOST_CACHE) >= 4096:
            _HOST_CACHE.clear()
        key = _HOST_CACHE[value] = normalize_host(value)
    return key
