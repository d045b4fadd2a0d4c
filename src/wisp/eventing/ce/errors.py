"""The CloudEvents exception tree.

Every error carries the HTTP status a receiver should answer with (``status``), so an ingress can
translate any of them with one ``except CloudEventError as e: respond(e.status, str(e))``.
The CloudEvents HTTP binding defines no status codes itself; the mapping follows the Knative data
plane (unparsable or invalid event: 400, never retried) and the CloudEvents webhook spec
(unsupported event format: 415).
"""

from __future__ import annotations

__all__ = [
    "CloudEventError",
    "InvalidEventError",
    "MalformedEventError",
    "NotACloudEventError",
    "UnsupportedEventFormatError",
    "UnsupportedSpecVersionError",
]


class CloudEventError(ValueError):
    """Base of every CloudEvents codec error; ``attribute`` names the offending attribute if any."""

    status = 400
    reason = "BadRequest"

    def __init__(self, message: str, *, attribute: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attribute = attribute


class MalformedEventError(CloudEventError):
    """The bytes could not be parsed: bad JSON, bad Base64, bad percent-encoding, invalid UTF-8."""

    reason = "MalformedEvent"


class InvalidEventError(CloudEventError):
    """The message parsed, but the event breaks the CloudEvents spec (missing or ill-typed attribute)."""

    reason = "InvalidEvent"


class NotACloudEventError(InvalidEventError):
    """A binary-mode message without the mandatory ``ce-`` headers: probably not a CloudEvent at all."""

    reason = "NotACloudEvent"


class UnsupportedSpecVersionError(InvalidEventError):
    """``specversion`` names a CloudEvents version this codec does not speak."""

    reason = "UnsupportedSpecVersion"


class UnsupportedEventFormatError(CloudEventError):
    """A structured or batched message in an event format other than JSON (e.g. ``+avro``)."""

    status = 415
    reason = "UnsupportedMediaType"
