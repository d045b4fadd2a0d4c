"""The OCI image layout store: blobs by digest, manifests, tags in index.json, resolution."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import pytest

from tests.unit.build.helpers import Member, image_with_layers
from wisp.build import (
    BlobTooLarge,
    DigestMismatch,
    ImageNotFound,
    ImageStore,
    InvalidReference,
    ManifestError,
    parse_reference,
)
from wisp.build.oci import MT_INDEX, MT_MANIFEST, REF_NAME


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_new_store_is_a_valid_oci_layout(store: ImageStore) -> None:
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_text())
    assert index == {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    assert (store.root / "blobs" / "sha256").is_dir()


def test_blob_is_stored_under_its_digest_from_bytes_or_stream(store: ImageStore) -> None:
    desc = store.put_blob(b"hello")
    assert desc.digest == sha(b"hello") and desc.size == 5
    assert (store.root / "blobs" / "sha256" / desc.digest[7:]).read_bytes() == b"hello"
    again = store.put_blob(io.BytesIO(b"hello"))
    assert again.digest == desc.digest
    assert store.has_blob(desc.digest)
    with store.open_blob(desc.digest) as f:
        assert f.read() == b"hello"
    assert list(store.ingest_dir.iterdir()) == []


def test_expected_digest_mismatch_stores_nothing(store: ImageStore) -> None:
    with pytest.raises(DigestMismatch, match="not sha256:"):
        store.put_blob(b"actual", expected=sha(b"other"))
    assert not store.has_blob(sha(b"actual"))
    assert list(store.ingest_dir.iterdir()) == []


def test_blob_writer_limit_discards_partial_blob(store: ImageStore) -> None:
    writer = store.blob_writer(limit=4)
    writer.write(b"1234")
    with pytest.raises(BlobTooLarge):
        writer.write(b"5")
    assert list(store.ingest_dir.iterdir()) == []


def test_manifest_referencing_missing_blobs_is_refused(store: ImageStore) -> None:
    missing = sha(b"nothing")
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": "x", "digest": missing, "size": 1}, "layers": []}
    with pytest.raises(ManifestError, match="not in the store"):
        store.put_manifest(manifest)


def test_tag_resolve_and_image_config(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("a.txt", data=b"a")]], {"Cmd": ["run"]})
    store.tag("team/app:v1", digest)
    assert store.resolve("team/app:v1") == digest
    assert store.resolve(f"team/app@{digest}") == digest
    assert store.resolve(digest) == digest
    assert store.image_config(digest)["config"] == {"Cmd": ["run"]}
    entry = json.loads(store.index_path.read_text())["manifests"][0]
    assert entry["annotations"] == {REF_NAME: "team/app:v1"}
    assert entry["mediaType"] == MT_MANIFEST and entry["size"] == store.blob_size(digest)


def test_bare_name_means_latest(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("a", data=b"1")]])
    store.tag("app", digest)
    assert store.list_tags() == {"app:latest": digest}
    assert store.resolve("app:latest") == digest


def test_unknown_references_raise_image_not_found_with_known_tags(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("a", data=b"1")]])
    store.tag("app:v1", digest)
    with pytest.raises(ImageNotFound, match=r"app:v2 not found \(known tags: v1\)"):
        store.resolve("app:v2")
    with pytest.raises(ImageNotFound):
        store.resolve("sha256:" + "0" * 64)
    with pytest.raises(ImageNotFound):
        store.tag("app:v3", "sha256:" + "1" * 64)


def test_moving_a_tag_leaves_resolved_digest_usable(store: ImageStore) -> None:
    first = image_with_layers(store, [[Member("v", data=b"one")]])
    second = image_with_layers(store, [[Member("v", data=b"two")]])
    store.tag("app:prod", first)
    pinned = store.resolve("app:prod")
    store.tag("app:prod", second)
    assert store.resolve("app:prod") == second
    assert store.list_tags() == {"app:prod": second}
    assert (store.unpack(pinned) / "v").read_bytes() == b"one"
    assert store.image_config(pinned)["rootfs"]["type"] == "layers"


def test_untag_removes_only_the_tag(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("v", data=b"x")]])
    store.tag("app:a", digest)
    store.tag("app:b", digest)
    assert store.untag("app:a") is True
    assert store.untag("app:a") is False
    assert store.tags_of("app") == ["b"] and store.has_blob(digest)


def test_concurrent_taggers_lose_no_tag(store: ImageStore) -> None:
    digest = image_with_layers(store, [[Member("v", data=b"x")]])
    other = ImageStore(store.root)  # a second object on the same folder shares the lock

    def tag_many(s: ImageStore, prefix: str) -> None:
        for i in range(15):
            s.tag(f"app:{prefix}{i}", digest)

    threads = [threading.Thread(target=tag_many, args=(s, p))
               for s, p in ((store, "a"), (other, "b"), (store, "c"), (other, "d"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.tags_of("app")) == 60
    json.loads(store.index_path.read_text())  # still valid JSON


@pytest.mark.parametrize("ref", ["UPPER:tag", "app:", "app:-bad", "a//b:1", "app@sha256:xyz", "/abs:1"])
def test_invalid_references_are_rejected(ref: str) -> None:
    with pytest.raises(InvalidReference):
        parse_reference(ref)


def test_reference_parsing_keeps_slashes_in_names() -> None:
    parsed = parse_reference("org/team/app:1.0")
    assert (parsed.name, parsed.tag, parsed.digest) == ("org/team/app", "1.0", None)
    assert str(parsed) == "org/team/app:1.0"
