"""Image references: `name:tag`, `name@sha256:…`, or a bare digest, spelled as the OCI distribution spec says.

Pure parsing and validation, shared by the store, the registry routes and the push client so that all
three accept and reject exactly the same strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wisp.build.errors import InvalidReference

DEFAULT_TAG = "latest"

# distribution-spec: path components of lowercase alphanumerics joined by separators.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME_LENGTH = 255


def is_digest(value: str) -> bool:
    """True for a sha256 digest in canonical form (the only algorithm this store writes)."""
    return DIGEST_RE.fullmatch(value) is not None


def check_digest(value: str) -> str:
    """Return `value` if it is a canonical sha256 digest, else raise `InvalidReference`."""
    if not is_digest(value):
        raise InvalidReference(f"invalid digest {value!r} (expected sha256:<64 lowercase hex digits>)")
    return value


def check_name(name: str) -> str:
    """Return `name` if it is a valid repository name (may contain `/`), else raise."""
    if len(name) > MAX_NAME_LENGTH or NAME_RE.fullmatch(name) is None:
        raise InvalidReference(
            f"invalid image name {name!r} (lowercase letters, digits, '.', '_', '-' and '/' separators)")
    return name


def check_tag(tag: str) -> str:
    """Return `tag` if valid (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), else raise."""
    if TAG_RE.fullmatch(tag) is None:
        raise InvalidReference(f"invalid tag {tag!r} (letters, digits, '_', '.', '-'; at most 128)")
    return tag


@dataclass(frozen=True)
class Reference:
    """A parsed reference: a repository name with a tag or a digest, or a bare digest (`name` empty)."""

    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}" if self.name else self.digest
        return f"{self.name}:{self.tag}"

    @property
    def tagged(self) -> str:
        """The `name:tag` string recorded as `org.opencontainers.image.ref.name` in index.json."""
        if self.tag is None:
            raise InvalidReference(f"{self} has no tag")
        return f"{self.name}:{self.tag}"


def parse_reference(ref: str) -> Reference:
    """Parse `name`, `name:tag`, `name@sha256:…` or `sha256:…`; a missing tag means `latest`."""
    ref = ref.strip()
    if is_digest(ref):
        return Reference(name="", digest=ref)
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return Reference(name=check_name(name), digest=check_digest(digest))
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return Reference(name=check_name(ref[:colon]), tag=check_tag(ref[colon + 1:]))
    return Reference(name=check_name(ref), tag=DEFAULT_TAG)
