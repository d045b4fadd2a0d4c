"""Content-addressed image store in the OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`).

Revisions pin code by digest (ARCHITECTURE §5), so the store's job is to make a digest mean exactly one
byte sequence forever: blobs are written to a temp file, hashed while streaming, fsynced and renamed into
place, and never modified afterwards. Tags live only in `index.json` (as
`org.opencontainers.image.ref.name = name:tag`), rewritten atomically under a lock, so moving a tag never
touches what a running Revision already resolved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from wisp.build.errors import (
    BlobNotFound,
    BlobTooLarge,
    DigestMismatch,
    ImageNotFound,
    ManifestError,
)
from wisp.build.reference import check_digest, parse_reference

OCI_LAYOUT_VERSION = "1.0.0"
MT_OCTET = "application/octet-stream"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IMAGE_MANIFEST_TYPES = frozenset({MT_MANIFEST, MT_DOCKER_MANIFEST})
INDEX_TYPES = frozenset({MT_INDEX, MT_DOCKER_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1024 * 1024

# One lock per store root, so several ImageStore objects on the same folder in one process still
# serialise their index.json rewrites (an flock covers other processes).
_INDEX_LOCKS: dict[Path, threading.Lock] = {}
_INDEX_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in manifests and index.json."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Descriptor:
        """Parse a descriptor, raising `ManifestError` on missing or mistyped fields."""
        if not isinstance(data, dict):
            raise ManifestError(f"descriptor must be an object, got {type(data).__name__}")
        digest, size = data.get("digest"), data.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"descriptor needs a string digest and a non-negative size: {data!r}")
        try:
            check_digest(digest)
        except Exception as exc:
            raise ManifestError(str(exc)) from None
        return cls(str(data.get("mediaType", MT_OCTET)), digest, size, dict(data.get("annotations") or {}))


def host_platform() -> tuple[str, str]:
    """(os, architecture) in the GOOS/GOARCH spelling the image config uses."""
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "i686": "386", "i386": "386"}.get(platform.machine().lower(),
                                                                platform.machine().lower())
    return ("linux" if sys.platform.startswith("linux") else sys.platform), arch


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Stable JSON bytes, so the same document always hashes to the same digest."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_media_type(doc: Mapping[str, Any]) -> str:
    """The declared mediaType of a manifest, or the one implied by its shape."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if "manifests" in doc:
        return MT_INDEX
    return MT_MANIFEST


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Decode and shape-check an image manifest or index; raise `ManifestError` if it is neither."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise ManifestError("manifest must be a JSON object with schemaVersion 2")
    media_type = manifest_media_type(doc)
    if media_type in IMAGE_MANIFEST_TYPES:
        Descriptor.from_dict(doc.get("config"))
        if not isinstance(doc.get("layers"), list):
            raise ManifestError("image manifest needs a 'layers' list")
        for layer in doc["layers"]:
            Descriptor.from_dict(layer)
    elif media_type in INDEX_TYPES:
        if not isinstance(doc.get("manifests"), list):
            raise ManifestError("image index needs a 'manifests' list")
        for entry in doc["manifests"]:
            Descriptor.from_dict(entry)
    else:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    return doc


def referenced_descriptors(doc: Mapping[str, Any]) -> list[Descriptor]:
    """Every blob a (parsed) manifest points at: config and layers, or the index's manifests."""
    if manifest_media_type(doc) in INDEX_TYPES:
        return [Descriptor.from_dict(m) for m in doc["manifests"]]
    return [Descriptor.from_dict(doc["config"])] + [Descriptor.from_dict(d) for d in doc["layers"]]


def _fsync_dir(path: Path) -> None:
    """Persist a rename: without this a crash can lose the directory entry of a fsynced file."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class BlobWriter:
    """Streams one blob into the store: write chunks, then `commit()` to verify and publish it.

    Nothing is visible under `blobs/` until `commit()` succeeds; `abort()` (or leaving a `with` block
    without committing) removes the temp file. `limit` bounds the size so uploads cannot fill the disk.
    """

    def __init__(self, store: ImageStore, *, limit: int | None = None) -> None:
        self._store = store
        self._limit = limit
        fd, name = tempfile.mkstemp(dir=store.ingest_dir, prefix="blob-")
        self.path = Path(name)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._committed = False
        self.size = 0

    def write(self, data: bytes) -> int:
        """Append a chunk; raise `BlobTooLarge` (and discard everything) past the limit."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        if self._limit is not None and self.size + len(data) > self._limit:
            self.abort()
            raise BlobTooLarge(f"blob exceeds the limit of {self._limit} bytes")
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Flush to the OS (gzip and tar writers call this on the file object they wrap)."""
        if self._file is not None:
            self._file.flush()

    @property
    def digest(self) -> str:
        """Digest of what has been written so far."""
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None, media_type: str = MT_OCTET) -> Descriptor:
        """fsync, verify against `expected` (if given) and rename into `blobs/sha256/`."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        digest = self.digest
        if expected is not None and expected != digest:
            self.path.unlink(missing_ok=True)
            raise DigestMismatch(f"content hashes to {digest}, not {expected}")
        final = self._store.blob_path(digest)
        if final.exists():
            self.path.unlink(missing_ok=True)
        else:
            os.chmod(self.path, 0o444)
            os.replace(self.path, final)
            _fsync_dir(final.parent)
        self._committed = True
        return Descriptor(media_type, digest, self.size)

    def abort(self) -> None:
        """Drop the temp file; safe to call more than once, and a no-op after `commit()`."""
        if self._committed:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()


class ImageStore:
    """An OCI image layout at `root`; unpacked root filesystems go to `<root>/../rootfs/<hex>/`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.rootfs_dir = self.root.parent / "rootfs"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.ingest_dir.mkdir(parents=True, exist_ok=True)
        with _INDEX_LOCKS_GUARD:
            self._lock = _INDEX_LOCKS.setdefault(self.root.resolve(), threading.Lock())
        with self._index_locked():
            layout = self.root / "oci-layout"
            if not layout.exists():
                self._write_atomic(layout, canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
            if not self.index_path.exists():
                self._write_atomic(self.index_path, self._index_bytes([]))

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    # -- blobs -----------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where the blob with `digest` lives (whether or not it exists)."""
        return self.blobs_dir / check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the store") from None

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raise `BlobNotFound` if absent."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the store") from None

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def blob_writer(self, *, limit: int | None = None) -> BlobWriter:
        """A streaming writer; see `BlobWriter`."""
        return BlobWriter(self, limit=limit)

    def put_blob(self, data: bytes | BinaryIO, *, media_type: str = MT_OCTET,
                 expected: str | None = None) -> Descriptor:
        """Store bytes or a readable stream, verifying `expected` if given; idempotent."""
        with self.blob_writer() as writer:
            if isinstance(data, bytes | bytearray | memoryview):
                writer.write(bytes(data))
            else:
                for chunk in iter(lambda: data.read(CHUNK), b""):
                    writer.write(chunk)
            return writer.commit(expected, media_type)

    # -- manifests -------------------------------------------------------------------------------
    def put_manifest(self, manifest: Mapping[str, Any]) -> str:
        """Store a manifest (as canonical JSON) after checking its blobs exist; return its digest."""
        return self.put_manifest_bytes(canonical_json(manifest)).digest

    def put_manifest_bytes(self, data: bytes, expected: str | None = None) -> Descriptor:
        """Store manifest bytes exactly as given (a registry must keep the pushed bytes)."""
        doc = parse_manifest(data)
        missing = [d.digest for d in referenced_descriptors(doc) if not self.has_blob(d.digest)]
        if missing:
            raise ManifestError(f"manifest references blobs not in the store: {', '.join(missing)}")
        return self.put_blob(data, media_type=manifest_media_type(doc), expected=expected)

    def manifest(self, digest: str) -> dict[str, Any]:
        """Load a stored manifest; raise `ImageNotFound` if absent, `ManifestError` if not a manifest."""
        try:
            data = self.read_blob(digest)
        except BlobNotFound:
            raise ImageNotFound(f"no manifest {digest} in the store") from None
        return parse_manifest(data)

    def image_manifest(self, digest: str) -> tuple[str, dict[str, Any]]:
        """Follow an index to the entry for this host's platform (else its first entry)."""
        doc = self.manifest(digest)
        if manifest_media_type(doc) not in INDEX_TYPES:
            return digest, doc
        entries = doc["manifests"]
        if not entries:
            raise ManifestError(f"image index {digest} lists no manifests")
        os_name, arch = host_platform()
        chosen = next((e for e in entries if e.get("platform", {}).get("os") == os_name
                       and e.get("platform", {}).get("architecture") == arch), entries[0])
        return self.image_manifest(chosen["digest"])

    def image_config(self, digest: str) -> dict[str, Any]:
        """The image config JSON (Entrypoint, Cmd, Env, WorkingDir, rootfs …) of an image."""
        _, doc = self.image_manifest(digest)
        desc = Descriptor.from_dict(doc["config"])
        try:
            config = json.loads(self.read_blob(desc.digest))
        except (BlobNotFound, ValueError) as exc:
            raise ManifestError(f"image {digest}: unreadable config {desc.digest}: {exc}") from None
        if not isinstance(config, dict):
            raise ManifestError(f"image {digest}: config {desc.digest} is not a JSON object")
        return config

    # -- tags and index.json ---------------------------------------------------------------------
    def _read_index(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads(self.index_path.read_bytes())
        except FileNotFoundError:
            return []
        return list(doc.get("manifests", []))

    def _index_bytes(self, entries: list[dict[str, Any]]) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries},
                          indent=2, sort_keys=True).encode() + b"\n"

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @contextlib.contextmanager
    def _index_locked(self) -> Iterator[None]:
        """Serialise read-modify-write of index.json across threads and processes."""
        with self._lock, open(self.root / ".index.lock", "a+b") as lockfile:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lockfile.fileno(), fcntl.LOCK_UN)

    def tag(self, name: str, digest: str) -> None:
        """Point `name` (`repo:tag`, or `repo` meaning `repo:latest`) at the manifest `digest`."""
        ref = parse_reference(name)
        doc = self.manifest(digest)
        desc = Descriptor(manifest_media_type(doc), digest, self.blob_size(digest), {REF_NAME: ref.tagged})
        with self._index_locked():
            entries = [e for e in self._read_index()
                       if (e.get("annotations") or {}).get(REF_NAME) != ref.tagged]
            entries.append(desc.to_dict())
            entries.sort(key=lambda e: (e.get("annotations") or {}).get(REF_NAME, ""))
            self._write_atomic(self.index_path, self._index_bytes(entries))

    def untag(self, name: str) -> bool:
        """Remove a tag; the manifest blob stays, so Revisions pinned to it keep working."""
        ref = parse_reference(name)
        with self._index_locked():
            entries = self._read_index()
            kept = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) != ref.tagged]
            if len(kept) != len(entries):
                self._write_atomic(self.index_path, self._index_bytes(kept))
        return len(kept) != len(entries)

    def list_tags(self) -> dict[str, str]:
        """Every `name:tag` in index.json mapped to its manifest digest."""
        out: dict[str, str] = {}
        for entry in self._read_index():
            ref_name = (entry.get("annotations") or {}).get(REF_NAME)
            if ref_name:
                out[ref_name] = entry["digest"]
        return out

    def tags_of(self, name: str) -> list[str]:
        """The tags of one repository name, sorted."""
        prefix = name + ":"
        return sorted(r[len(prefix):] for r in self.list_tags() if r.startswith(prefix))

    def resolve(self, ref: str) -> str:
        """Turn `name:tag`, `name@sha256:…` or `sha256:…` into the manifest digest it names now."""
        parsed = parse_reference(ref)
        if parsed.digest is not None:
            if not self.has_blob(parsed.digest):
                raise ImageNotFound(f"image {ref} not found: no manifest {parsed.digest} in the store")
            return parsed.digest
        digest = self.list_tags().get(parsed.tagged)
        if digest is None:
            known = self.tags_of(parsed.name)
            hint = f" (known tags: {', '.join(known)})" if known else ""
            raise ImageNotFound(f"image {parsed.tagged} not found{hint}")
        return digest

    # -- root filesystems ------------------------------------------------------------------------
    def rootfs_path(self, digest: str) -> Path:
        """Where `unpack(digest)` puts (or has put) the image's files."""
        return self.rootfs_dir / check_digest(digest).split(":", 1)[1]

    def unpack(self, digest: str) -> Path:
        """Extract the image's layers once into a read-only tree and return its path."""
        from wisp.build.unpack import unpack_image

        return unpack_image(self, self.resolve(digest))

    def remove_rootfs(self, digest: str) -> None:
        """Delete an unpacked tree (it is read-only, so permissions are restored first)."""
        from wisp.build.unpack import remove_tree

        remove_tree(self.rootfs_path(digest))
