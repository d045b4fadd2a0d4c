"""CloudEvents 1.0 for wisp: the event type, the JSON (and batch) format, the HTTP binding.

This is the public surface; the implementation lives in ``wisp.eventing.ce``. Typical use::

    event = from_http(request.headers.items(), body)      # CloudEventError.status -> HTTP answer
    headers, body = to_binary(event.with_attributes(knativebrokerttl=255))

wisp accepts specversion 1.0 and, for old producers, 0.3 (kept as 0.3 when forwarded).
"""

from __future__ import annotations

from wisp.eventing.ce.attributes import (
    SPEC_VERSIONS,
    AttributeValue,
    AttrType,
    canonical_string,
    format_timestamp,
    is_json_content_type,
    is_valid_name,
    parse_timestamp,
)
from wisp.eventing.ce.errors import (
    CloudEventError,
    InvalidEventError,
    MalformedEventError,
    NotACloudEventError,
    UnsupportedEventFormatError,
    UnsupportedSpecVersionError,
)
from wisp.eventing.ce.event import CloudEvent, EventData
from wisp.eventing.ce.http import (
    Headers,
    Mode,
    decode_header_value,
    detect_mode,
    encode_header_value,
    events_from_http,
    from_http,
    to_batch,
    to_binary,
    to_http,
    to_structured,
)
from wisp.eventing.ce.jsonformat import (
    BATCH_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    from_dict,
    from_json,
    from_json_batch,
    to_dict,
    to_json,
    to_json_batch,
)

__all__ = [
    "BATCH_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "SPEC_VERSIONS",
    "AttrType",
    "AttributeValue",
    "CloudEvent",
    "CloudEventError",
    "EventData",
    "Headers",
    "InvalidEventError",
    "MalformedEventError",
    "Mode",
    "NotACloudEventError",
    "UnsupportedEventFormatError",
    "UnsupportedSpecVersionError",
    "canonical_string",
    "decode_header_value",
    "detect_mode",
    "encode_header_value",
    "events_from_http",
    "format_timestamp",
    "from_dict",
    "from_http",
    "from_json",
    "from_json_batch",
    "is_json_content_type",
    "is_valid_name",
    "parse_timestamp",
    "to_batch",
    "to_binary",
    "to_dict",
    "to_http",
    "to_json",
    "to_json_batch",
    "to_structured",
]
