"""Unpacking: once per digest, atomically, read-only, and never outside the root."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.unit.build.helpers import Member, image_with_layers
from wisp.build import ImageStore, UnsafeArchive


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def no_write_bits(path: Path) -> bool:
    return stat.S_IMODE(os.lstat(path).st_mode) & 0o222 == 0


def test_unpack_places_files_next_to_the_store_read_only(store: ImageStore) -> None:
    digest = image_with_layers(store, [[
        Member("bin", "dir", mode=0o755), Member("bin/run", data=b"#!/bin/sh\n", mode=0o4755),
        Member("etc/conf", data=b"k=v"), Member("link", "symlink", link="etc/conf"),
        Member("hard", "hardlink", link="etc/conf"),
    ]])
    root = store.unpack(digest)
    assert root == store.root.parent / "rootfs" / digest[7:]
    assert (root / "etc" / "conf").read_bytes() == b"k=v"
    assert (root / "link").read_bytes() == b"k=v" and os.readlink(root / "link") == "etc/conf"
    assert (root / "hard").read_bytes() == b"k=v"
    run_mode = stat.S_IMODE(os.stat(root / "bin" / "run").st_mode)
    assert run_mode == 0o555  # exec kept, write and setuid dropped
    for path in (root, root / "bin", root / "etc", root / "bin" / "run", root / "etc" / "conf"):
        assert no_write_bits(path), path
    assert [p.name for p in (store.root.parent / "rootfs").iterdir()] == [digest[7:]]


def test_unpack_happens_once_per_digest(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("f", data=b"1")]])
    root = store.unpack(digest)
    inode = os.stat(root / "f").st_ino
    assert store.unpack(digest) == root
    assert os.stat(root / "f").st_ino == inode


def test_concurrent_unpacks_see_only_the_complete_tree(store: ImageStore) -> None:
    files = [Member(f"d{i}/f{j}", data=os.urandom(2000)) for i in range(20) for j in range(10)]
    digest = image_with_layers(store, [files])
    seen: list[int] = []

    def work() -> None:
        root = store.unpack(digest)
        seen.append(sum(1 for _ in root.rglob("f*")))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [200] * 8
    assert [p.name for p in store.rootfs_dir.iterdir()] == [digest[7:]]


def test_later_layers_override_and_whiteouts_delete(store: ImageStore) -> None:
    digest = image_with_layers(store, [
        [Member("keep", data=b"old"), Member("gone", data=b"x"), Member("opq/a", data=b"a")],
        [Member("keep", data=b"new"), Member(".wh.gone"), Member("opq/.wh..wh..opq"),
         Member("opq/b", data=b"b")],
    ])
    root = store.unpack(digest)
    assert (root / "keep").read_bytes() == b"new"
    assert not (root / "gone").exists()
    assert sorted(p.name for p in (root / "opq").iterdir()) == ["b"]


@pytest.mark.parametrize(("members", "message"), [
    ([Member("/etc/passwd", data=b"x")], "absolute"),
    ([Member("../../evil", data=b"x")], "escapes"),
    ([Member("a/../../evil", data=b"x")], "escapes"),
    ([Member("dev", "chr")], "special files"),
    ([Member("pipe", "fifo")], "special files"),
    ([Member("l", "symlink", link="/etc/passwd")], "absolute"),
    ([Member("d/l", "symlink", link="../../outside")], "leaves"),
    ([Member("h", "hardlink", link="../outside")], "escapes"),
    ([Member("l", "symlink", link="."), Member("l/../../x", data=b"x")], "escapes"),
    # a chain that only escapes once followed: d/b -> .. is the root, then d2/l -> ../b/.. climbs out
    ([Member("d/b", "symlink", link=".."), Member("d/d2/l", "symlink", link="../b/..")], "outside"),
    # writing through a symlink to a folder that leaves the root
    ([Member("d/b", "symlink", link=".."), Member("d/d2/l", "symlink", link="../b/.."),
      Member("d/d2/l/escaped", data=b"x")], "outside|through a link"),
])
def test_unsafe_layers_are_rejected_whole(store: ImageStore, tmp_path: Path, members: list[Member],
                                          message: str) -> None:
    digest = image_with_layers(store, [[Member("fine", data=b"ok"), *members]])
    with pytest.raises(UnsafeArchive, match=message):
        store.unpack(digest)
    assert not store.rootfs_path(digest).exists()
    assert list(store.rootfs_dir.iterdir()) == []
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "evil").exists()


def test_remove_rootfs_deletes_read_only_tree(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("d/e/f", data=b"1")]])
    root = store.unpack(digest)
    store.remove_rootfs(digest)
    assert not root.exists()
    assert store.unpack(digest).is_dir()
