"""Push images from a local `ImageStore` to a wisp API server's `/v2` registry (and pull them back).

The CLI packs a source folder into a local cache store, then calls `push_image` so the server holds the
exact same bytes (same digests). Blobs the server already has are skipped after a HEAD; the rest are
streamed from disk, never read whole into memory. The manifest goes last, so a tag on the server never
points at an image whose blobs are still missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from wisp.build.errors import DigestMismatch, InvalidReference, PushError
from wisp.build.oci import (
    CHUNK,
    INDEX_TYPES,
    MANIFEST_TYPES,
    ImageStore,
    manifest_media_type,
    parse_manifest,
    referenced_descriptors,
)
from wisp.build.reference import parse_reference

DEFAULT_TIMEOUT = 60.0
_ACCEPT = ", ".join(sorted(MANIFEST_TYPES))


def _fail(response: httpx.Response, what: str) -> PushError:
    """A PushError carrying the registry's own error code and message when it sent one."""
    try:
        first = response.json()["errors"][0]
        reason = f"{first.get('code', 'UNKNOWN')}: {first.get('message', '')}"
    except (ValueError, KeyError, IndexError, TypeError):
        reason = response.text[:200] or response.reason_phrase
    return PushError(f"{what} failed with HTTP {response.status_code} ({reason})")


@contextlib.contextmanager
def _session(api_base_url: str, client: httpx.Client | None, timeout: float) -> Iterator[httpx.Client]:
    """Use the caller's client, or own one for the duration; transport failures become PushError."""
    try:
        if client is not None:
            yield client
            return
        with httpx.Client(base_url=api_base_url, timeout=timeout) as owned:
            yield owned
    except httpx.ConnectError as exc:
        raise PushError(f"cannot reach the registry at {api_base_url}: {exc}") from None
    except httpx.TransportError as exc:
        raise PushError(f"transfer with the registry at {api_base_url} failed: {exc}") from None


def _iter_blob(store: ImageStore, digest: str) -> Iterator[bytes]:
    with store.open_blob(digest) as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def _push_blob(http: httpx.Client, store: ImageStore, name: str, digest: str) -> None:
    if http.head(f"/v2/{name}/blobs/{digest}").status_code == 200:
        return
    started = http.post(f"/v2/{name}/blobs/uploads/")
    if started.status_code != 202 or "location" not in started.headers:
        raise _fail(started, f"starting upload of {digest}")
    url = started.url.join(started.headers["location"])
    done = http.put(url, params={"digest": digest}, content=_iter_blob(store, digest),
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(store.blob_size(digest))})
    if done.status_code != 201:
        raise _fail(done, f"uploading blob {digest}")


def _push_manifest(http: httpx.Client, store: ImageStore, name: str, digest: str, reference: str) -> None:
    data = store.read_blob(digest)
    doc = parse_manifest(data)
    if manifest_media_type(doc) in INDEX_TYPES:
        for child in referenced_descriptors(doc):
            _push_manifest(http, store, name, child.digest, child.digest)
    else:
        for blob in referenced_descriptors(doc):
            _push_blob(http, store, name, blob.digest)
    response = http.put(f"/v2/{name}/manifests/{reference}", content=data,
                        headers={"Content-Type": manifest_media_type(doc)})
    if response.status_code != 201:
        raise _fail(response, f"pushing manifest {name}:{reference}")
    pushed = response.headers.get("docker-content-digest")
    if pushed and pushed != digest:
        raise DigestMismatch(f"registry stored manifest as {pushed}, expected {digest}")


def push_image(store: ImageStore, ref: str, api_base_url: str, *, client: httpx.Client | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> str:
    """Push `ref` (`name:tag` or `name@sha256:…`) from `store` to the server; return the manifest digest.

    `client` (with `base_url` set) may be passed to reuse a connection pool or for tests.
    """
    parsed = parse_reference(ref)
    if not parsed.name:
        raise InvalidReference(f"cannot push {ref}: a repository name is needed (name:tag)")
    digest = store.resolve(ref)
    with _session(api_base_url, client, timeout) as http:
        _push_manifest(http, store, parsed.name, digest, parsed.tag or digest)
    return digest


def _pull_blob(http: httpx.Client, store: ImageStore, name: str, digest: str) -> None:
    if store.has_blob(digest):
        return
    with http.stream("GET", f"/v2/{name}/blobs/{digest}") as response:
        if response.status_code != 200:
            response.read()
            raise _fail(response, f"downloading blob {digest}")
        with store.blob_writer() as writer:
            for chunk in response.iter_bytes(CHUNK):
                writer.write(chunk)
            writer.commit(digest)


def _pull_manifest(http: httpx.Client, store: ImageStore, name: str, reference: str) -> str:
    response = http.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": _ACCEPT})
    if response.status_code != 200:
        raise _fail(response, f"fetching manifest {name}:{reference}")
    doc = parse_manifest(response.content)
    for child in referenced_descriptors(doc):
        if manifest_media_type(doc) in INDEX_TYPES:
            _pull_manifest(http, store, name, child.digest)
        else:
            _pull_blob(http, store, name, child.digest)
    expected = reference if reference.startswith("sha256:") else None
    return store.put_manifest_bytes(response.content, expected=expected).digest


def pull_image(store: ImageStore, ref: str, api_base_url: str, *, client: httpx.Client | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> str:
    """Fetch `ref` into `store` (verifying every digest), tag it locally and return its digest."""
    parsed = parse_reference(ref)
    if not parsed.name:
        raise InvalidReference(f"cannot pull {ref}: a repository name is needed (name:tag)")
    with _session(api_base_url, client, timeout) as http:
        digest = _pull_manifest(http, store, parsed.name, parsed.digest or str(parsed.tag))
    if parsed.tag is not None:
        store.tag(parsed.tagged, digest)
    return digest
