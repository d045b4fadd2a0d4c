"""One exception tree for artifacts: packing sources, the image store, the registry client.

Callers catch `BuildError` to turn any of these into one readable CLI line or an API `Status`;
the subclasses say what went wrong precisely enough for a test or a retry decision.
"""

from __future__ import annotations


class BuildError(Exception):
    """Base of every error raised by `wisp.build`."""


class InvalidReference(BuildError):
    """An image name, tag or digest is not spelled as the OCI distribution spec requires."""


class ImageNotFound(BuildError):
    """A reference names no image (unknown tag, or a digest whose blob is absent)."""


class BlobNotFound(BuildError):
    """A blob with the given digest is not in the store."""


class DigestMismatch(BuildError):
    """Content does not hash to the digest it was announced with."""


class ManifestError(BuildError):
    """A manifest or image config is malformed, or references blobs the store lacks."""


class SourceError(BuildError):
    """A source folder cannot be packed (missing, not a folder, unreadable, too big)."""


class UnsafeArchive(BuildError):
    """A layer tries to escape its root or create device files; it is never extracted."""


class PushError(BuildError):
    """The registry refused part of a push; the message carries its error code."""


class BlobTooLarge(BuildError):
    """A blob being written grew past the limit its writer was given."""
