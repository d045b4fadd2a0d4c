"""Packing source folders: reproducible digests, ignore files, modes, config, clear failures."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from wisp.build import ImageStore, SourceError, pack_directory
from wisp.build import pack as pack_module
from wisp.build.oci import MT_LAYER_GZIP


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\nexec python app.py\n")
    (root / "run.sh").chmod(0o755)
    return root


def layer_members(store: ImageStore, digest: str) -> dict[str, tarfile.TarInfo]:
    manifest = store.manifest(digest)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == MT_LAYER_GZIP
    plain = gzip.decompress(store.read_blob(layer["digest"]))
    with tarfile.open(fileobj=io.BytesIO(plain)) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_same_content_gives_same_digest_even_after_touch(store: ImageStore, src: Path,
                                                         tmp_path: Path) -> None:
    first = pack_directory(store, src, name="app", tag="v1")
    os.utime(src / "app.py", (1_000_000, 1_000_000))
    other_store = ImageStore(tmp_path / "other")
    again = pack_directory(other_store, src, name="app", tag="v2")
    assert again.digest == first.digest
    (src / "app.py").write_text("print('changed')\n")
    assert pack_directory(store, src, name="app", tag="v3").digest != first.digest


def test_layer_headers_are_normalised(store: ImageStore, src: Path) -> None:
    ref = pack_directory(store, src, name="app", tag="v1")
    members = layer_members(store, ref.digest)
    assert list(members) == ["app.py", "pkg", "pkg/util.py", "run.sh"]
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.pax_headers) == (0, 0, 0, "", "", {})
    assert members["run.sh"].mode == 0o755 and members["app.py"].mode == 0o644
    layer = store.manifest(ref.digest)["layers"][0]["digest"]
    assert store.read_blob(layer)[4:8] == b"\0\0\0\0"  # gzip mtime


def test_exec_bit_survives_into_the_unpacked_tree(store: ImageStore, src: Path) -> None:
    ref = pack_directory(store, src, name="app", tag="v1")
    root = store.unpack(ref.digest)
    assert os.access(root / "run.sh", os.X_OK)
    assert not os.stat(root / "app.py").st_mode & 0o111
    assert (root / "pkg" / "util.py").read_text() == "X = 1\n"


def test_ignore_files_are_honoured(store: ImageStore, src: Path) -> None:
    (src / ".gitignore").write_text("*.log\nbuild/\n!keep.log\n")
    (src / ".wispignore").write_text("secrets.txt\n")
    for name in ("debug.log", "keep.log", "secrets.txt"):
        (src / name).write_text(name)
    (src / "build").mkdir()
    (src / "build" / "out.bin").write_text("x")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    (src / "pkg" / ".gitignore").write_text("local.py\n")
    (src / "pkg" / "local.py").write_text("x")
    (src / "local.py").write_text("top-level file is not matched by pkg/.gitignore")
    ref = pack_directory(store, src, name="app", tag="v1")
    names = set(layer_members(store, ref.digest))
    assert {"keep.log", "local.py", ".gitignore", ".wispignore", "pkg/util.py"} <= names
    assert not names & {"debug.log", "secrets.txt", "build", "build/out.bin", ".git", ".git/HEAD",
                        "pkg/local.py"}


def test_image_config_records_how_to_run(store: ImageStore, src: Path) -> None:
    ref = pack_directory(store, src, name="team/app", tag="v1", command=["python"], args=["app.py"],
                         env={"MODE": "prod", "A": "b=c"}, working_dir="pkg")
    config = store.image_config(store.resolve("team/app:v1"))
    assert config["config"] == {"Entrypoint": ["python"], "Cmd": ["app.py"],
                                "Env": ["MODE=prod", "A=b=c"], "WorkingDir": "/pkg"}
    assert config["os"] and config["architecture"]
    layer = store.manifest(ref.digest)["layers"][0]
    plain = gzip.decompress(store.read_blob(layer["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(plain).hexdigest()]}
    assert str(ref) == f"team/app:v1@{ref.digest}"


def index_bytes(store: ImageStore) -> bytes:
    return store.index_path.read_bytes()


def test_missing_source_and_file_source_are_clear_errors(store: ImageStore, src: Path) -> None:
    before = index_bytes(store)
    with pytest.raises(SourceError, match="does not exist"):
        pack_directory(store, src / "nope", name="app", tag="v1")
    with pytest.raises(SourceError, match="is a file, not a folder"):
        pack_directory(store, src / "app.py", name="app", tag="v1")
    assert index_bytes(store) == before


def test_unreadable_file_is_named_and_nothing_is_tagged(store: ImageStore, src: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pack_directory(store, src, name="app", tag="v1")
    before = index_bytes(store)
    secret = src / "pkg" / "secret.py"
    secret.write_text("x")
    if os.geteuid() == 0:  # root reads mode-000 files, so simulate the kernel's refusal
        real_open = pack_module._open_source

        def refusing(path: Path):  # type: ignore[no-untyped-def]
            if path == secret:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path)

        monkeypatch.setattr(pack_module, "_open_source", refusing)
    else:
        secret.chmod(0)
    with pytest.raises(SourceError, match=r"cannot read pkg/secret\.py: Permission denied"):
        pack_directory(store, src, name="app", tag="v1")
    assert index_bytes(store) == before
    assert list(store.ingest_dir.iterdir()) == []


def test_oversized_folder_reports_its_size(store: ImageStore, src: Path) -> None:
    before = index_bytes(store)
    (src / "big.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(SourceError, match=r"more than .*KiB.* limit of 4\.0 KiB"):
        pack_directory(store, src, name="app", tag="v1", max_bytes=4096)
    assert index_bytes(store) == before
    blobs_before = set(store.blobs_dir.iterdir())
    assert blobs_before == set()  # the size check runs before any blob is written


def test_symlinks_inside_are_kept_and_escaping_ones_refused(store: ImageStore, src: Path) -> None:
    (src / "current.py").symlink_to("app.py")
    ref = pack_directory(store, src, name="app", tag="v1")
    assert layer_members(store, ref.digest)["current.py"].linkname == "app.py"
    (src / "outside").symlink_to("/etc/passwd")
    with pytest.raises(SourceError, match="outside -> /etc/passwd points outside"):
        pack_directory(store, src, name="app", tag="v2")
    (src / ".wispignore").write_text("outside\n")
    pack_directory(store, src, name="app", tag="v2")


def test_manifest_and_index_are_valid_json_documents(store: ImageStore, src: Path) -> None:
    ref = pack_directory(store, src, name="app", tag="v1")
    manifest = json.loads(store.read_blob(ref.digest))
    assert manifest["schemaVersion"] == 2
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert store.list_tags() == {"app:v1": ref.digest}
