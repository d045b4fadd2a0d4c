"""The `/v2` OCI distribution API (push and pull subset) over an `ImageStore`.

`wisp` CLIs (and docker/podman/crane/oras) push images here; Revisions then resolve tags against the
same store. Blobs are global to the store (content addressing makes that safe); tags are per
repository name (`name:tag` in index.json). Upload bodies are streamed to temp files and hashed on the
way, never held in memory, and bounded by `max_upload_bytes` (413 past it). Errors use the
distribution-spec JSON form `{"errors": [{"code", "message", "detail"}]}`.

Mount the routes under `/v2`: `Mount("/v2", routes=Registry(store).routes)`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from wisp.build.errors import (
    BlobTooLarge,
    BuildError,
    DigestMismatch,
    InvalidReference,
    ManifestError,
)
from wisp.build.oci import (
    BlobWriter,
    ImageStore,
    manifest_media_type,
    parse_manifest,
    referenced_descriptors,
)
from wisp.build.reference import check_name, check_tag, is_digest
from wisp.clock import Clock, SystemClock

log = logging.getLogger("wisp.build.registry")

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_UPLOADS = 64
DEFAULT_UPLOAD_TTL = 3600.0
API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


class RegistryError(Exception):
    """An error answered in the distribution-spec format with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}
        return JSONResponse(body, status_code=self.status, headers={**API_VERSION_HEADER, **self.headers})


def _translate(exc: BuildError) -> RegistryError:
    """Map the build exception tree onto distribution error codes, in one place."""
    if isinstance(exc, DigestMismatch):
        return RegistryError(400, "DIGEST_INVALID", str(exc))
    if isinstance(exc, BlobTooLarge):
        return RegistryError(413, "SIZE_INVALID", str(exc))
    if isinstance(exc, InvalidReference):
        return RegistryError(400, "NAME_INVALID", str(exc))
    if isinstance(exc, ManifestError):
        return RegistryError(400, "MANIFEST_INVALID", str(exc))
    return RegistryError(500, "UNKNOWN", str(exc))


Handler = Callable[[Any, Request], Awaitable[Response]]


def _endpoint(fn: Handler) -> Handler:
    """Turn raised `RegistryError`/`BuildError` into distribution-spec error responses."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Request) -> Response:
        try:
            return await fn(self, request)
        except RegistryError as exc:
            return exc.response()
        except BuildError as exc:
            return _translate(exc).response()

    return wrapper


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    try:
        return check_name(name)
    except InvalidReference as exc:
        raise RegistryError(400, "NAME_INVALID", str(exc), {"name": name}) from None


def _digest_param(value: str | None) -> str:
    if not value or not is_digest(value):
        raise RegistryError(400, "DIGEST_INVALID", f"missing or unsupported digest {value!r} "
                            "(only sha256:<hex> is accepted)", {"digest": value})
    return value


def _range_header(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


@dataclass
class _Upload:
    """One blob upload session: a temp-file writer plus bookkeeping."""

    name: str
    writer: BlobWriter
    started: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Registry:
    """Upload sessions and route handlers for one store; `routes` is what the API server mounts."""

    def __init__(self, store: ImageStore, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES, max_uploads: int = DEFAULT_MAX_UPLOADS,
                 upload_ttl: float = DEFAULT_UPLOAD_TTL, clock: Clock | None = None) -> None:
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.max_manifest_bytes = max_manifest_bytes
        self.max_uploads = max_uploads
        self.upload_ttl = upload_ttl
        self.clock: Clock = clock or SystemClock()
        self._uploads: dict[str, _Upload] = {}

    @property
    def routes(self) -> list[BaseRoute]:
        """Starlette routes, relative to the `/v2` mount point."""
        return [
            Route("/", self.base, methods=["GET"]),
            Route("/{name:path}/tags/list", self.tags_list, methods=["GET"]),
            Route("/{name:path}/manifests/{reference}", self.manifest_get, methods=["GET", "HEAD"],
                  name="registry:manifest"),
            Route("/{name:path}/manifests/{reference}", self.manifest_put, methods=["PUT"]),
            Route("/{name:path}/blobs/uploads/", self.upload_start, methods=["POST"]),
            Route("/{name:path}/blobs/uploads", self.upload_start, methods=["POST"]),
            Route("/{name:path}/blobs/uploads/{upload_id}", self.upload_status, methods=["GET"],
                  name="registry:upload"),
            Route("/{name:path}/blobs/uploads/{upload_id}", self.upload_patch, methods=["PATCH"]),
            Route("/{name:path}/blobs/uploads/{upload_id}", self.upload_finish, methods=["PUT"]),
            Route("/{name:path}/blobs/uploads/{upload_id}", self.upload_cancel, methods=["DELETE"]),
            Route("/{name:path}/blobs/{digest}", self.blob_get, methods=["GET", "HEAD"],
                  name="registry:blob"),
        ]

    def close(self) -> None:
        """Abort every open upload session (server shutdown)."""
        for upload in self._uploads.values():
            upload.writer.abort()
        self._uploads.clear()

    def expire_uploads(self) -> int:
        """Drop sessions older than `upload_ttl` (clients that vanished mid-push); return how many."""
        now = self.clock.monotonic()
        stale = [uid for uid, u in self._uploads.items()
                 if now - u.started > self.upload_ttl and not u.lock.locked()]
        for uid in stale:
            self._uploads.pop(uid).writer.abort()
        return len(stale)

    # -- base and tags ---------------------------------------------------------------------------
    async def base(self, request: Request) -> Response:
        return JSONResponse({}, headers=API_VERSION_HEADER)

    @_endpoint
    async def tags_list(self, request: Request) -> Response:
        name = _name(request)
        tags = self.store.tags_of(name)
        if not tags:
            raise RegistryError(404, "NAME_UNKNOWN", f"repository {name} is not known", {"name": name})
        last = request.query_params.get("last")
        if last:
            tags = [t for t in tags if t > last]
        headers = dict(API_VERSION_HEADER)
        limit = request.query_params.get("n")
        if limit is not None and limit.isdigit() and 0 < int(limit) < len(tags):
            tags = tags[:int(limit)]
            headers["Link"] = f'<{request.url.path}?n={limit}&last={tags[-1]}>; rel="next"'
        return JSONResponse({"name": name, "tags": tags}, headers=headers)

    # -- manifests -------------------------------------------------------------------------------
    def _manifest_digest(self, name: str, reference: str) -> str:
        tags = self.store.list_tags()
        digest = reference if is_digest(reference) else tags.get(f"{name}:{reference}", "")
        if not digest or not self.store.has_blob(digest):
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"manifest {name}:{reference} is not known",
                                {"name": name, "reference": reference})
        return digest

    @_endpoint
    async def manifest_get(self, request: Request) -> Response:
        name, reference = _name(request), str(request.path_params["reference"])
        digest = self._manifest_digest(name, reference)
        data = self.store.read_blob(digest)
        try:
            media_type = manifest_media_type(parse_manifest(data))
        except ManifestError:
            raise RegistryError(404, "MANIFEST_UNKNOWN", f"{digest} is not a manifest") from None
        headers = {**API_VERSION_HEADER, "Docker-Content-Digest": digest, "Content-Type": media_type,
                   "Content-Length": str(len(data))}
        body = b"" if request.method == "HEAD" else data
        return Response(body, headers=headers)

    @_endpoint
    async def manifest_put(self, request: Request) -> Response:
        name, reference = _name(request), str(request.path_params["reference"])
        tag = None if is_digest(reference) else reference
        if tag is not None:
            try:
                check_tag(tag)
            except InvalidReference as exc:
                raise RegistryError(400, "MANIFEST_INVALID", str(exc), {"tag": tag}) from None
        data = await self._read_small_body(request)
        doc = parse_manifest(data)
        missing = [d.digest for d in referenced_descriptors(doc) if not self.store.has_blob(d.digest)]
        if missing:
            raise RegistryError(400, "MANIFEST_BLOB_UNKNOWN", "manifest references unknown blobs",
                                {"digests": missing})
        desc = await to_thread.run_sync(
            functools.partial(self.store.put_manifest_bytes, data, expected=None if tag else reference))
        if tag is not None:
            await to_thread.run_sync(self.store.tag, f"{name}:{tag}", desc.digest)
        log.info("pushed manifest %s:%s -> %s", name, reference, desc.digest)
        location = request.url_for("registry:manifest", name=name, reference=desc.digest).path
        return Response(status_code=201, headers={**API_VERSION_HEADER, "Location": location,
                                                  "Docker-Content-Digest": desc.digest})

    async def _read_small_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_manifest_bytes:
                raise RegistryError(413, "SIZE_INVALID",
                                    f"manifest larger than {self.max_manifest_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- blobs -----------------------------------------------------------------------------------
    @_endpoint
    async def blob_get(self, request: Request) -> Response:
        _name(request)
        digest = str(request.path_params["digest"])
        _digest_param(digest)
        if not self.store.has_blob(digest):
            raise RegistryError(404, "BLOB_UNKNOWN", f"blob {digest} is not known", {"digest": digest})
        return FileResponse(self.store.blob_path(digest), media_type="application/octet-stream",
                            headers={**API_VERSION_HEADER, "Docker-Content-Digest": digest})

    def _blob_created(self, request: Request, name: str, digest: str) -> Response:
        location = request.url_for("registry:blob", name=name, digest=digest).path
        return Response(status_code=201, headers={**API_VERSION_HEADER, "Location": location,
                                                  "Docker-Content-Digest": digest})

    def _upload_accepted(self, request: Request, name: str, upload_id: str, size: int,
                         status: int = 202) -> Response:
        location = request.url_for("registry:upload", name=name, upload_id=upload_id).path
        return Response(status_code=status, headers={
            **API_VERSION_HEADER, "Location": location, "Range": _range_header(size),
            "Docker-Upload-UUID": upload_id})

    # -- uploads ---------------------------------------------------------------------------------
    @_endpoint
    async def upload_start(self, request: Request) -> Response:
        name = _name(request)
        mount = request.query_params.get("mount")
        if mount and is_digest(mount) and self.store.has_blob(mount):
            return self._blob_created(request, name, mount)
        digest = request.query_params.get("digest")
        if digest is not None:
            return await self._finish(request, self._new_upload(name), _digest_param(digest))
        self.expire_uploads()
        if len(self._uploads) >= self.max_uploads:
            raise RegistryError(429, "TOOMANYREQUESTS", "too many blob uploads in progress",
                                headers={"Retry-After": "5"})
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = self._new_upload(name)
        return self._upload_accepted(request, name, upload_id, 0)

    def _new_upload(self, name: str) -> _Upload:
        return _Upload(name, self.store.blob_writer(limit=self.max_upload_bytes), self.clock.monotonic())

    def _session(self, request: Request) -> tuple[str, _Upload]:
        name, upload_id = _name(request), str(request.path_params["upload_id"])
        upload = self._uploads.get(upload_id)
        if upload is None or upload.name != name:
            raise RegistryError(404, "BLOB_UPLOAD_UNKNOWN", f"upload {upload_id} is not known",
                                {"uuid": upload_id})
        return upload_id, upload

    @_endpoint
    async def upload_status(self, request: Request) -> Response:
        upload_id, upload = self._session(request)
        return self._upload_accepted(request, upload.name, upload_id, upload.writer.size, status=204)

    @_endpoint
    async def upload_patch(self, request: Request) -> Response:
        upload_id, upload = self._session(request)
        async with upload.lock:
            self._check_content_range(request, upload_id, upload)
            await self._receive(request, upload_id, upload)
            return self._upload_accepted(request, upload.name, upload_id, upload.writer.size)

    @_endpoint
    async def upload_finish(self, request: Request) -> Response:
        upload_id, upload = self._session(request)
        digest = _digest_param(request.query_params.get("digest"))
        async with upload.lock:
            self._uploads.pop(upload_id, None)
            return await self._finish(request, upload, digest)

    @_endpoint
    async def upload_cancel(self, request: Request) -> Response:
        upload_id, upload = self._session(request)
        self._uploads.pop(upload_id, None)
        upload.writer.abort()
        return Response(status_code=204, headers=API_VERSION_HEADER)

    def _check_content_range(self, request: Request, upload_id: str, upload: _Upload) -> None:
        """Chunks must arrive in order: a Content-Range not starting at the current size is 416."""
        header = request.headers.get("content-range")
        if not header:
            return
        start, _, _ = header.removeprefix("bytes ").removeprefix("bytes=").partition("-")
        if not start.strip().isdigit() or int(start) != upload.writer.size:
            location = request.url_for("registry:upload", name=upload.name, upload_id=upload_id).path
            raise RegistryError(416, "BLOB_UPLOAD_INVALID",
                                f"chunk starts at {start!r}, expected {upload.writer.size}",
                                headers={"Location": location, "Range": _range_header(upload.writer.size)})

    async def _receive(self, request: Request, upload_id: str | None, upload: _Upload) -> None:
        """Stream the request body into the session's temp file; 413 (and drop the session) past the limit."""
        announced = request.headers.get("content-length", "")
        try:
            if announced.isdigit() and upload.writer.size + int(announced) > self.max_upload_bytes:
                upload.writer.abort()
                raise BlobTooLarge(f"blob exceeds the limit of {self.max_upload_bytes} bytes")
            async for chunk in request.stream():
                if chunk:
                    upload.writer.write(chunk)
        except BlobTooLarge:
            if upload_id is not None:
                self._uploads.pop(upload_id, None)
            raise

    async def _finish(self, request: Request, upload: _Upload, digest: str) -> Response:
        """Append the final body, verify the digest and publish the blob (the session is already gone)."""
        try:
            await self._receive(request, None, upload)
            await to_thread.run_sync(functools.partial(upload.writer.commit, digest))
        finally:
            upload.writer.abort()
        log.info("received blob %s for %s", digest, upload.name)
        return self._blob_created(request, upload.name, digest)
