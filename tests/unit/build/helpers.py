"""Builders for hand-made layers and images, so unpack and registry tests control every tar header."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass

from wisp.build.oci import MT_CONFIG, MT_LAYER_GZIP, MT_MANIFEST, ImageStore, canonical_json


@dataclass
class Member:
    """One tar entry: `kind` is file|dir|symlink|hardlink|fifo|chr."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    link: str = ""


_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}


def layer_bytes(members: list[Member]) -> tuple[bytes, str]:
    """A gzip tar layer and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.linkname = _TYPES[m.kind], m.mode, m.link
            if m.kind == "file":
                info.size = len(m.data)
                tf.addfile(info, io.BytesIO(m.data))
            else:
                tf.addfile(info)
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def image_with_layers(store: ImageStore, layers: list[list[Member]], config: dict | None = None) -> str:
    """Store an image made of the given layers; return its manifest digest (untagged)."""
    descs, diff_ids = [], []
    for members in layers:
        data, diff_id = layer_bytes(members)
        descs.append(store.put_blob(data, media_type=MT_LAYER_GZIP).to_dict())
        diff_ids.append(diff_id)
    cfg = {"architecture": "amd64", "os": "linux", "config": config or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cfg_desc = store.put_blob(canonical_json(cfg), media_type=MT_CONFIG)
    return store.put_manifest({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                               "config": cfg_desc.to_dict(), "layers": descs})
