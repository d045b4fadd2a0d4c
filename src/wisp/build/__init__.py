"""Artifacts: source packing, the content-addressed OCI image store, the /v2 registry and its client.

The public surface is re-exported here; the API server mounts `Registry(store).routes` at `/v2`, the
controllers resolve tags with `ImageStore.resolve` and unpack with `ImageStore.unpack`, the CLI packs with
`pack_directory` and uploads with `push_image`.
"""

from wisp.build.client import pull_image, push_image
from wisp.build.errors import (
    BlobNotFound,
    BlobTooLarge,
    BuildError,
    DigestMismatch,
    ImageNotFound,
    InvalidReference,
    ManifestError,
    PushError,
    SourceError,
    UnsafeArchive,
)
from wisp.build.oci import Descriptor, ImageStore
from wisp.build.pack import ImageRef, pack_directory
from wisp.build.reference import Reference, parse_reference
from wisp.build.registry import Registry

__all__ = [
    "BlobNotFound",
    "BlobTooLarge",
    "BuildError",
    "Descriptor",
    "DigestMismatch",
    "ImageNotFound",
    "ImageRef",
    "ImageStore",
    "InvalidReference",
    "ManifestError",
    "PushError",
    "Reference",
    "Registry",
    "SourceError",
    "UnsafeArchive",
    "pack_directory",
    "parse_reference",
    "pull_image",
    "push_image",
]
