"""The curated public surface of wisp.build: other packages import these names, so they must stay."""

from __future__ import annotations

import wisp.build


def test_public_names_are_pinned_and_importable() -> None:
    assert sorted(wisp.build.__all__) == [
        "BlobNotFound", "BlobTooLarge", "BuildError", "Descriptor", "DigestMismatch", "ImageNotFound",
        "ImageRef", "ImageStore", "InvalidReference", "ManifestError", "PushError", "Reference",
        "Registry", "SourceError", "UnsafeArchive", "pack_directory", "parse_reference", "pull_image",
        "push_image",
    ]
    for name in wisp.build.__all__:
        assert getattr(wisp.build, name) is not None


def test_every_error_is_a_build_error() -> None:
    errors = [getattr(wisp.build, n) for n in wisp.build.__all__
              if isinstance(getattr(wisp.build, n), type) and issubclass(getattr(wisp.build, n), Exception)]
    assert len(errors) == 10
    assert all(issubclass(e, wisp.build.BuildError) for e in errors)
