"""Extract image layers into a read-only root filesystem, once per digest, refusing unsafe archives.

A layer comes from whoever pushed it, so extraction trusts nothing: absolute paths, `..`, device nodes,
FIFOs and links that leave the tree are rejected (the whole image fails, nothing is half-kept), and no
write goes through a symlink. The tree is built in a temp dir and renamed into place, so concurrent
callers (threads or processes) never see a partial snapshot; the result has no write bits, so a running
app cannot change the code its Revision pinned.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from wisp.build.errors import ManifestError, UnsafeArchive
from wisp.build.oci import Descriptor

if TYPE_CHECKING:
    from wisp.build.oci import ImageStore

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_COPY_CHUNK = 1024 * 1024
_UNSUPPORTED_LAYER_SUFFIXES = ("+zstd", "+encrypted")

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def unpack_image(store: ImageStore, digest: str) -> Path:
    """Return `<rootfs>/<hex>`, extracting the image's layers first if no caller has done so yet."""
    final = store.rootfs_path(digest)
    if final.is_dir():
        return final
    with _lock_for(final):
        if final.is_dir():
            return final
        _, manifest = store.image_manifest(digest)
        layers = [Descriptor.from_dict(d) for d in manifest["layers"]]
        store.rootfs_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=store.rootfs_dir, prefix=f".tmp-{final.name[:12]}-"))
        try:
            modes: dict[str, int] = {}
            for layer in layers:
                if layer.media_type.endswith(_UNSUPPORTED_LAYER_SUFFIXES):
                    raise ManifestError(f"layer {layer.digest}: unsupported media type {layer.media_type}")
                with store.open_blob(layer.digest) as blob:
                    apply_layer(blob, tmp, modes)
            check_links_inside(tmp)
            make_read_only(tmp, modes)
            _publish(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished tree into place; if another process won the race, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        remove_tree(tmp)
        return
    os.chmod(final, 0o555)


def safe_relpath(name: str) -> str | None:
    """Normalise a member name to a relative POSIX path; None for the root itself; reject escapes."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"absolute path in layer: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"path escapes the image root: {name!r}")
    return "/".join(parts) or None


def _inside(root_real: str, path: str) -> bool:
    return path == root_real or path.startswith(root_real + os.sep)


def _check_parent(root: Path, rel: str) -> Path:
    """Create the parent dirs of `rel`, refusing if an existing component resolves outside `root`."""
    target = root / rel
    root_real = os.path.realpath(root)
    if not _inside(root_real, os.path.realpath(target.parent)):
        raise UnsafeArchive(f"{rel!r} would be written through a link leaving the image root")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def apply_layer(blob: BinaryIO, root: Path, modes: dict[str, int]) -> None:
    """Apply one (optionally gzip-compressed) tar layer on top of `root`, with OCI whiteouts."""
    created: set[str] = set()
    try:
        with tarfile.open(fileobj=blob, mode="r|*") as archive:
            for member in archive:
                _apply_member(archive, member, root, modes, created)
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"layer is not a readable tar archive: {exc}") from None


def _apply_member(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path,
                  modes: dict[str, int], created: set[str]) -> None:
    rel = safe_relpath(member.name)
    if rel is None:  # the layer's "./" entry: the root's own mode is fixed at publish time
        return
    parent, base = posixpath.split(rel)
    if base == OPAQUE_MARKER:
        _opaque(root, parent, created)
    elif base.startswith(WHITEOUT_PREFIX):
        hidden = posixpath.join(parent, base[len(WHITEOUT_PREFIX):])
        if hidden not in created:
            _remove(root / hidden)
    else:
        _extract(archive, member, root, rel, modes)
        created.add(rel)


def _opaque(root: Path, rel_dir: str, created: set[str]) -> None:
    """Hide everything lower layers put in `rel_dir`, keeping what this layer added."""
    directory = root / rel_dir
    if not directory.is_dir() or directory.is_symlink():
        return
    for child in directory.iterdir():
        child_rel = posixpath.join(rel_dir, child.name) if rel_dir else child.name
        if child_rel not in created:
            _remove(child)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path, rel: str,
             modes: dict[str, int]) -> None:
    target = _check_parent(root, rel)
    if member.isdir():
        if os.path.lexists(target) and not (target.is_dir() and not target.is_symlink()):
            _remove(target)
        target.mkdir(mode=0o700, exist_ok=True)
        modes[rel] = member.mode
        return
    _remove(target)
    if member.isreg():
        _write_file(archive, member, target)
    elif member.issym():
        _check_symlink(rel, member.linkname)
        os.symlink(member.linkname, target)
    elif member.islnk():
        _hard_link(root, rel, member.linkname, target)
    else:
        raise UnsafeArchive(f"{rel!r}: device files, FIFOs and other special files are not allowed")


def _write_file(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = archive.extractfile(member)
    if source is None:
        raise UnsafeArchive(f"{member.name!r}: file has no content")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _COPY_CHUNK)
        # Keep read and exec bits only: the snapshot must not be writable or setuid.
        os.fchmod(out.fileno(), (member.mode & 0o555) | 0o400)


def _check_symlink(rel: str, linkname: str) -> None:
    """A symlink may only point inside the tree (relative, never climbing above the root)."""
    if os.path.isabs(linkname):
        raise UnsafeArchive(f"symlink {rel!r} -> {linkname!r} is absolute and would leave the image root")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), linkname))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(f"symlink {rel!r} -> {linkname!r} leaves the image root")


def _hard_link(root: Path, rel: str, linkname: str, target: Path) -> None:
    source_rel = safe_relpath(linkname)
    if source_rel is None:
        raise UnsafeArchive(f"hard link {rel!r} points at the image root")
    source = root / source_rel
    if not _inside(os.path.realpath(root), os.path.realpath(source)):
        raise UnsafeArchive(f"hard link {rel!r} -> {linkname!r} leaves the image root")
    if not os.path.lexists(source) or not stat.S_ISREG(os.lstat(source).st_mode):
        raise UnsafeArchive(f"hard link {rel!r} -> {linkname!r} does not name an earlier regular file")
    os.link(source, target, follow_symlinks=False)


def check_links_inside(root: Path) -> None:
    """After extraction, every symlink (followed through chains) must still resolve inside `root`."""
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _inside(root_real, os.path.realpath(path)):
                rel = os.path.relpath(path, root)
                raise UnsafeArchive(f"symlink {rel!r} -> {os.readlink(path)!r} resolves outside the image")


def make_read_only(root: Path, modes: dict[str, int]) -> None:
    """Give directories their archived mode minus write bits (deepest first, so walking still works)."""
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                os.chmod(path, (modes.get(rel, 0o755) & 0o555) | 0o500)


def remove_tree(path: Path) -> None:
    """Delete a (possibly read-only) tree; missing is fine."""
    if not os.path.lexists(path):
        return
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o700)
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child):
                os.chmod(child, 0o700)
    shutil.rmtree(path, ignore_errors=True)
