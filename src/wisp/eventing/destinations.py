"""Destinations: resolve a Knative `Destination` to a URL, and reach URLs under the wisp domain.

Resolution follows knative/specs `control-plane.md` (spec §2.2): a `ref` to a Knative Service
uses its `status.url`, any other Addressable its `status.address.url`; with both `ref` and `uri`,
the uri is resolved relative to the ref's URL. Resolution reads the store and is called from the
reconcilers; the dispatcher only ever sees the resolved URLs written to Trigger status.

`connect_target` exists because Python's resolver does not map `*.localhost` to loopback: a
URL whose host is under the wisp domain is reached through the ingress listener with the original
host in the `Host` header, exactly as the router expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from wisp.api import kinds
from wisp.api.errors import NotFound
from wisp.eventing.delivery import Destination, KReference
from wisp.eventing.dispatch import Response
from wisp.eventing.httpclient import HttpClient, HttpClientError, ProtocolError, authority, build_request, split_url
from wisp.store import Store

__all__ = ["HttpSender", "UnresolvedDestination", "connect_target", "resolve_destination", "resolve_ref"]

KSVC = kinds.lookup("ksvc")


class UnresolvedDestination(Exception):
    """A Destination could not be turned into a URL; `reason` becomes the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _status_url(obj: dict[str, Any], kind: kinds.Kind) -> str:
    status = obj.get("status") or {}
    if kind is KSVC:
        return str(status.get("url") or "")
    address = status.get("address") or {}
    return str(address.get("url") or "") if isinstance(address, dict) else ""


def resolve_ref(store: Store, namespace: str, ref: KReference) -> str:
    """The URL an Addressable (or Knative Service) publishes; raises `UnresolvedDestination`."""
    ns = ref.namespace or namespace
    what = f"{ref.kind} {ns}/{ref.name}"
    try:
        kind = kinds.by_api_version(ref.api_version, ref.kind)
    except NotFound:
        raise UnresolvedDestination("UnknownKind", f"{ref.api_version} {ref.kind} is not served here") from None
    obj = store.find(kind, ns, ref.name)
    if obj is None:
        raise UnresolvedDestination("NotFound", f"{what} does not exist")
    url = _status_url(obj, kind)
    if not url:
        raise UnresolvedDestination("NotAddressable", f"{what} has no URL yet")
    return url


def resolve_destination(store: Store, namespace: str, dest: Destination) -> str:
    """`ref` URL, `uri`, or the uri resolved relative to the ref's URL."""
    if dest.ref is None:
        if not dest.uri:
            raise UnresolvedDestination("Invalid", "destination has neither ref nor uri")
        return dest.uri
    base = resolve_ref(store, namespace, dest.ref)
    if not dest.uri:
        return base
    return urljoin(base, dest.uri)


def _under(host: str, domain: str) -> bool:
    host = host.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def connect_target(url: str, domain: str, ingress: tuple[str, int]) -> tuple[str, str | None]:
    """(URL to connect to, Host header to send or None).

    Hosts under `domain` go to the ingress address with the original authority as `Host`; all
    other URLs are used unchanged.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not _under(host, domain):
        return url, None
    ingress_host, ingress_port = ingress
    netloc = f"{ingress_host}:{ingress_port}"
    return urlunsplit((parts.scheme or "http", netloc, parts.path, parts.query, "")), parts.netloc


@dataclass(frozen=True, slots=True)
class _Route:
    host: str
    port: int
    target: str
    host_header: str


_MAX_ROUTES = 1024


class HttpSender:
    """Delivers events over keep-alive pools; hosts under the domain go via ingress.

    Implements `wisp.eventing.dispatch.Sender`: HTTP and transport failures become a `Response`
    (status None for the latter), never an exception, so the retry logic sees one shape. Plain
    `http` goes through `wisp.eventing.httpclient` (deliveries are the dispatcher's hot path);
    only `https` URLs use httpx, created on first need.
    """

    def __init__(self, domain: str, ingress: tuple[str, int], *, max_connections: int = 512) -> None:
        self._domain = domain
        self._ingress = ingress
        self._max_connections = max_connections
        self._client = HttpClient(max_connections=max_connections)
        self._tls: httpx.AsyncClient | None = None
        self._routes: dict[str, _Route | None] = {}

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response:
        route = self._routes.get(url)
        if route is None and url not in self._routes:
            route = self._route(url)
        if route is None:
            target, host = connect_target(url, self._domain, self._ingress)
            return await self._send_httpx(target, host, headers, body, timeout)
        try:
            raw = build_request("POST", route.target, route.host_header, headers.items(), body)
            resp = await self._client.request(route.host, route.port, raw, timeout)
        except HttpClientError as e:
            return Response(None, error=f"{type(e).__name__}: {e}")
        return Response(resp.status, resp.headers, resp.body)

    def _route(self, url: str) -> _Route | None:
        """Where a plain-http URL is dialled, remembered (subscribers are few, deliveries many)."""
        target, host = connect_target(url, self._domain, self._ingress)
        route: _Route | None = None
        if target.startswith("http://"):
            try:
                dial, port, path = split_url(target)
            except ProtocolError:
                route = None  # httpx reports the bad URL in its own words
            else:
                route = _Route(dial, port, path, host or authority(dial, port))
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[url] = route
        return route

    async def _send_httpx(self, url: str, host: str | None, headers: dict[str, str], body: bytes,
                          timeout: float) -> Response:
        if self._tls is None:
            limits = httpx.Limits(max_connections=self._max_connections,
                                  max_keepalive_connections=self._max_connections)
            self._tls = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
        if host is not None:
            headers = {**headers, "host": host}
        try:
            resp = await self._tls.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as e:
            return Response(None, error=f"{type(e).__name__}: {e}")
        return Response(resp.status_code, resp.headers.multi_items(), resp.content)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._tls is not None:
            await self._tls.aclose()
