"""Pack a source folder into a single-layer OCI image, byte-for-byte reproducibly.

`wisp service create --source ./app` stores code as an image (ARCHITECTURE §5). The digest is the
identity of a Revision's code, so packing must be deterministic: entries sorted, timestamps and owners
zeroed, modes normalised the way git does (0644, or 0755 when any exec bit is set), gzip header
without name or mtime. Same content → same digest, on any day, regardless of checkout time or umask.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pathspec

from wisp.build.errors import BuildError, SourceError
from wisp.build.oci import (
    MT_CONFIG,
    MT_LAYER_GZIP,
    MT_MANIFEST,
    BlobWriter,
    Descriptor,
    ImageStore,
    canonical_json,
    host_platform,
)
from wisp.build.reference import check_name, check_tag

log = logging.getLogger("wisp.build.pack")

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
IGNORE_FILES = (".gitignore", ".wispignore")  # later files override earlier ones in the same folder
ALWAYS_SKIPPED = frozenset({".git"})
GZIP_LEVEL = 6


@dataclass(frozen=True)
class ImageRef:
    """A packed image: its repository name, the tag it was stored under, and its manifest digest."""

    name: str
    tag: str
    digest: str

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}@{self.digest}"


@dataclass(frozen=True)
class SourceEntry:
    """One thing to put in the layer; `rel` is its POSIX path inside the folder."""

    rel: str
    path: Path
    kind: str  # "dir" | "file" | "symlink"
    exec_bit: bool = False
    size: int = 0
    link: str = ""


@dataclass
class _IgnoreRules:
    """gitignore semantics across nested folders: the deepest folder with an opinion decides."""

    specs: list[tuple[str, pathspec.PathSpec]] = field(default_factory=list)

    def load(self, folder: Path, rel_dir: str) -> _IgnoreRules:
        specs = list(self.specs)
        for name in IGNORE_FILES:
            path = folder / name
            if path.is_file():
                try:
                    lines = path.read_text(errors="replace").splitlines()
                except OSError as exc:
                    raise SourceError(f"cannot read {_join(rel_dir, name)}: {exc.strerror}") from None
                specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(lines)))
        return _IgnoreRules(specs)

    def ignored(self, rel: str, is_dir: bool) -> bool:
        verdict = False
        for base, spec in self.specs:
            sub = rel[len(base) + 1:] if base else rel
            result = spec.check_file(sub + "/" if is_dir else sub)
            if result.include is not None:
                verdict = result.include
        return verdict


def _join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


def collect_entries(src: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[SourceEntry]:
    """List what would be packed, sorted, honouring ignore files; raise `SourceError` on problems."""
    if not src.exists():
        raise SourceError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise SourceError(f"source {src} is a file, not a folder")
    entries: list[SourceEntry] = []
    total = _walk(src, "", _IgnoreRules().load(src, ""), entries, 0, max_bytes)
    log.debug("packing %d entries (%s) from %s", len(entries), _human(total), src)
    return sorted(entries, key=lambda e: e.rel)


def _walk(folder: Path, rel_dir: str, rules: _IgnoreRules, out: list[SourceEntry],
          total: int, max_bytes: int) -> int:
    try:
        children = sorted(os.scandir(folder), key=lambda d: d.name)
    except OSError as exc:
        raise SourceError(f"cannot read folder {rel_dir or '.'}: {exc.strerror}") from None
    for child in children:
        rel = _join(rel_dir, child.name)
        is_dir = child.is_dir(follow_symlinks=False)
        if (is_dir and child.name in ALWAYS_SKIPPED) or rules.ignored(rel, is_dir):
            continue
        if is_dir:
            out.append(SourceEntry(rel, Path(child.path), "dir"))
            total = _walk(Path(child.path), rel, rules.load(Path(child.path), rel), out, total, max_bytes)
        else:
            entry = _leaf_entry(child, rel)
            if entry is None:
                continue
            out.append(entry)
            total += entry.size
        if total > max_bytes:
            raise SourceError(f"source folder holds more than {_human(total)} of files, over the "
                              f"limit of {_human(max_bytes)}; list large paths in .wispignore")
    return total


def _leaf_entry(child: os.DirEntry[str], rel: str) -> SourceEntry | None:
    try:
        st = child.stat(follow_symlinks=False)
    except OSError as exc:
        raise SourceError(f"cannot read {rel}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(child.path)
        target = os.path.normpath(os.path.join(os.path.dirname(rel), link))
        if os.path.isabs(link) or target == ".." or target.startswith("../"):
            raise SourceError(f"symlink {rel} -> {link} points outside the source folder; "
                              "ignore it or replace it with a copy")
        return SourceEntry(rel, Path(child.path), "symlink", link=link)
    if stat.S_ISREG(st.st_mode):
        return SourceEntry(rel, Path(child.path), "file", bool(st.st_mode & 0o111), st.st_size)
    log.warning("skipping %s: not a regular file, folder or symlink", rel)
    return None


def _tar_info(entry: SourceEntry) -> tarfile.TarInfo:
    """A header with every machine- and time-dependent field zeroed."""
    info = tarfile.TarInfo(entry.rel)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.link
    else:
        info.type, info.size = tarfile.REGTYPE, entry.size
        info.mode = 0o755 if entry.exec_bit else 0o644
    return info


def _open_source(path: Path) -> BinaryIO:
    """Open a file to pack (a seam so tests can simulate unreadable files even as root)."""
    return open(path, "rb")


class _HashingSink:
    """What tarfile writes to: hashes the uncompressed tar (the diff_id) and gzips it into the blob."""

    def __init__(self, writer: BlobWriter) -> None:
        self.hash = hashlib.sha256()
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=writer,
                                   compresslevel=GZIP_LEVEL, mtime=0)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self._gzip.write(data)

    def close(self) -> None:
        self._gzip.close()


def write_layer(store: ImageStore, entries: list[SourceEntry]) -> tuple[Descriptor, str]:
    """Write the gzip layer blob; return its descriptor and the diff_id (digest of the plain tar)."""
    with store.blob_writer() as writer:
        sink = _HashingSink(writer)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
            for entry in entries:
                _add_entry(archive, entry)
        sink.close()
        return writer.commit(media_type=MT_LAYER_GZIP), "sha256:" + sink.hash.hexdigest()


def _add_entry(archive: tarfile.TarFile, entry: SourceEntry) -> None:
    info = _tar_info(entry)
    if entry.kind != "file":
        archive.addfile(info)
        return
    try:
        with _open_source(entry.path) as f:
            archive.addfile(info, f)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SourceError(f"cannot read {entry.rel}: {reason} (it may have changed while packing)") from None


def image_config(diff_id: str, *, command: list[str] | None, args: list[str] | None,
                 env: Mapping[str, str] | None, working_dir: str | None) -> dict[str, object]:
    """The OCI image config: how to run the code (Entrypoint/Cmd/Env/WorkingDir) and its layer."""
    os_name, arch = host_platform()
    run: dict[str, object] = {}
    if command:
        run["Entrypoint"] = list(command)
    if args:
        run["Cmd"] = list(args)
    if env:
        for key in env:
            if not key or "=" in key:
                raise BuildError(f"invalid environment variable name {key!r}")
        run["Env"] = [f"{k}={v}" for k, v in env.items()]
    if working_dir:
        run["WorkingDir"] = working_dir if working_dir.startswith("/") else "/" + working_dir
    return {"architecture": arch, "os": os_name, "config": run,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "wisp pack", "comment": "source folder"}]}


def pack_directory(store: ImageStore, src: Path, *, name: str, tag: str = "latest",
                   command: list[str] | None = None, args: list[str] | None = None,
                   env: Mapping[str, str] | None = None, working_dir: str | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> ImageRef:
    """Pack `src` as `name:tag` in `store` and return the reference with its manifest digest.

    Files sit at the image root; `working_dir` (if any) is recorded as an absolute path in it. The
    tag is written last, so a failure never leaves index.json pointing at a broken image (at worst an
    unreferenced blob remains).
    """
    check_name(name)
    check_tag(tag)
    entries = collect_entries(Path(src), max_bytes)
    layer, diff_id = write_layer(store, entries)
    config = image_config(diff_id, command=command, args=args, env=env, working_dir=working_dir)
    config_desc = store.put_blob(canonical_json(config), media_type=MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": config_desc.to_dict(), "layers": [layer.to_dict()]}
    digest = store.put_manifest(manifest)
    store.tag(f"{name}:{tag}", digest)
    return ImageRef(name, tag, digest)
