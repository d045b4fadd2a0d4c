"""The HTTP protocol binding: percent-encoding, content modes, error statuses, interop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.eventing.strategies import events, texts
from wisp.eventing.cloudevents import (
    CloudEvent,
    InvalidEventError,
    MalformedEventError,
    Mode,
    NotACloudEventError,
    UnsupportedEventFormatError,
    canonical_string,
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

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
CE_HEADERS = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


# -- percent-encoding (spec §1.5) ---------------------------------------------------------------


def test_spec_example_is_encoded_exactly() -> None:
    assert encode_header_value("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (" ", "%20"),
        ('"', "%22"),
        ("%", "%25"),
        ("\t", "%09"),
        ("é", "%C3%A9"),
        ("a:/?#[]@!$&'()*+,;=~", "a:/?#[]@!$&'()*+,;=~"),
    ],
)
def test_only_space_quote_percent_and_non_printable_ascii_are_encoded(raw: str, encoded: str) -> None:
    assert encode_header_value(raw) == encoded


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),
        ("%e2%82%ac", "€"),  # lower-case hex is accepted
        ("%41%42c", "ABc"),  # needlessly encoded characters are accepted
        ("%2541", "%41"),  # exactly one round of decoding
        ('"quoted \\"value\\""', 'quoted "value"'),  # RFC 7230 quoted-string from older senders
        ("plain", "plain"),
    ],
)
def test_decoding(header: str, value: str) -> None:
    assert decode_header_value(header) == value


@pytest.mark.parametrize("header", ["%C0%A0", "%FF", "%E2%82", "%ED%A0%80"])
def test_invalid_utf8_after_decoding_is_rejected(header: str) -> None:
    with pytest.raises(MalformedEventError, match="UTF-8"):
        decode_header_value(header, "x")


@pytest.mark.parametrize("header", ["100%", "%4", "%zz", "a%g0"])
def test_malformed_percent_sequences_are_rejected(header: str) -> None:
    with pytest.raises(MalformedEventError, match="percent"):
        decode_header_value(header, "x")


def test_raw_utf8_header_bytes_as_servers_present_them_are_understood() -> None:
    latin1_view = "€".encode().decode("latin-1")  # what ASGI servers hand over for raw UTF-8 bytes
    assert decode_header_value(latin1_view) == "€"


@settings(max_examples=300)
@given(st.text())
def test_encode_then_decode_is_identity_and_output_is_header_safe(value: str) -> None:
    value = value.encode("utf-8", "replace").decode("utf-8")  # drop lone surrogates: not encodable
    encoded = encode_header_value(value)
    assert all(0x21 <= ord(c) <= 0x7E and c not in '"' for c in encoded)
    assert decode_header_value(encoded) == value


# -- content modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "mode"),
    [
        (None, Mode.BINARY),
        ("application/json", Mode.BINARY),
        ("text/plain", Mode.BINARY),
        ("application/cloudevents+json", Mode.STRUCTURED),
        ("Application/CloudEvents+JSON; charset=UTF-8", Mode.STRUCTURED),
        ("application/cloudevents+avro", Mode.STRUCTURED),
        ("application/cloudevents-batch+json", Mode.BATCH),
        ("APPLICATION/CLOUDEVENTS-BATCH+JSON", Mode.BATCH),
    ],
)
def test_mode_detection(ctype: str | None, mode: Mode) -> None:
    assert detect_mode(ctype) is mode


def test_binary_mode_decoding() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-myext": "a%20b",
        "Content-Type": "application/json",
        "User-Agent": "curl",
    }
    event = from_http(headers, b'{"a":1}')
    assert event.attributes == {**BASE, "myext": "a b", "datacontenttype": "application/json"}
    assert event.data == b'{"a":1}' and event.json() == {"a": 1}


def test_headers_may_be_pairs() -> None:
    assert from_http(list(CE_HEADERS.items()), b"").id == "1"


def test_a_repeated_ce_header_is_rejected() -> None:
    with pytest.raises(InvalidEventError, match="more than once"):
        from_http([*CE_HEADERS.items(), ("CE-ID", "2")], b"")


def test_message_without_ce_headers_is_not_a_cloudevent() -> None:
    with pytest.raises(NotACloudEventError) as caught:
        from_http({"content-type": "application/json"}, b"{}")
    assert caught.value.status == 400


def test_empty_body_means_no_data() -> None:
    assert from_http(CE_HEADERS, b"").data is None


def test_content_type_wins_over_a_stray_ce_datacontenttype() -> None:
    headers = {**CE_HEADERS, "ce-datacontenttype": "text/plain"}
    assert (
        from_http({**headers, "content-type": "application/xml"}, b"<a/>").datacontenttype
        == "application/xml"
    )
    assert from_http(headers, b"x").datacontenttype == "text/plain"


def test_invalid_header_values_name_the_attribute() -> None:
    with pytest.raises(InvalidEventError) as caught:
        from_http({**CE_HEADERS, "ce-time": "yesterday"}, b"")
    assert caught.value.attribute == "time"
    with pytest.raises(InvalidEventError) as caught:
        from_http({**CE_HEADERS, "ce-bad_name": "x"}, b"")
    assert caught.value.attribute == "bad_name"
    with pytest.raises(InvalidEventError) as caught:
        from_http({**CE_HEADERS, "ce-subject": "line%0Abreak"}, b"")
    assert caught.value.attribute == "subject"


def test_structured_body_is_authoritative_over_ce_headers() -> None:
    body = json.dumps({**BASE, "id": "from-body", "data": {"x": 1}}).encode()
    event = from_http({"content-type": "application/cloudevents+json", "ce-id": "from-header"}, body)
    assert event.id == "from-body" and event.data == {"x": 1}


@pytest.mark.parametrize(
    "ctype",
    ["application/cloudevents+avro", "application/cloudevents", "application/cloudevents-batch+protobuf"],
)
def test_unsupported_event_formats_answer_415(ctype: str) -> None:
    with pytest.raises(UnsupportedEventFormatError) as caught:
        events_from_http({"content-type": ctype}, b"{}")
    assert caught.value.status == 415


def test_from_http_refuses_a_batch_that_was_not_asked_for() -> None:
    headers, body = to_batch([CloudEvent(BASE)])
    with pytest.raises(UnsupportedEventFormatError):
        from_http(headers, body)
    assert events_from_http(headers, body) == [CloudEvent(BASE)]


def test_events_from_http_handles_every_mode() -> None:
    event = CloudEvent(BASE, {"a": 1})
    for headers, body in (to_binary(event), to_structured(event), to_batch([event, event])):
        got = events_from_http(headers, body)
        assert [e.json() for e in got] == [{"a": 1}] * len(got)
    assert events_from_http(*to_batch([])) == []


def test_malformed_structured_body_answers_400() -> None:
    with pytest.raises(MalformedEventError) as caught:
        from_http({"content-type": "application/cloudevents+json"}, b"{not json")
    assert caught.value.status == 400


# -- encoding -----------------------------------------------------------------------------------


def test_binary_encoding() -> None:
    event = CloudEvent({**BASE, "datacontenttype": "text/plain", "flag": True, "n": 7, "note": "a b"}, "hi")
    headers, body = to_binary(event)
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "content-type": "text/plain",
        "ce-flag": "true",
        "ce-n": "7",
        "ce-note": "a%20b",
    }
    assert body == b"hi"
    assert to_http(event) == (headers, body)


def test_json_data_without_content_type_is_labelled_json_in_binary_mode() -> None:
    headers, body = to_binary(CloudEvent(BASE, {"a": 1}))
    assert headers["content-type"] == "application/json" and json.loads(body) == {"a": 1}
    headers, _ = to_binary(CloudEvent(BASE, b"raw"))
    assert "content-type" not in headers


def test_structured_and_batch_content_types() -> None:
    event = CloudEvent(BASE)
    assert to_structured(event)[0]["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert to_http(event, Mode.STRUCTURED) == to_structured(event)
    assert (
        to_http(event, Mode.BATCH)[0]["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    )


@pytest.mark.parametrize("size", [64 * 1024, 256 * 1024])
def test_large_events_in_both_modes(size: int) -> None:
    event = CloudEvent({**BASE, "datacontenttype": "application/octet-stream"}, bytes(size))
    assert from_http(*to_binary(event)) == event
    assert from_http(*to_structured(event)) == event


@settings(max_examples=100, deadline=None)
@given(events())
def test_structured_round_trip_is_identity(event: CloudEvent) -> None:
    assert from_http(*to_structured(event)) == event


@settings(max_examples=100, deadline=None)
@given(events())
def test_binary_round_trip_keeps_canonical_attributes_and_body(event: CloudEvent) -> None:
    got = from_http(*to_binary(event))
    want = {k: canonical_string(v) for k, v in event.attributes.items()}
    if event.data is not None and not isinstance(event.data, bytes) and "datacontenttype" not in want:
        want["datacontenttype"] = "application/json"
    assert {k: canonical_string(v) for k, v in got.attributes.items()} == want
    assert got.data_bytes() == event.data_bytes()


@settings(max_examples=100, deadline=None)
@given(texts.filter(bool))
def test_any_legal_string_survives_a_header(value: str) -> None:
    event = CloudEvent({**BASE, "subject": value, "ext": value})
    got = from_http(*to_binary(event))
    assert got.subject == value and got.attributes["ext"] == value


# -- interoperability with the official Python SDK ----------------------------------------------


def _sdk_event() -> Any:
    return SdkEvent(
        {
            "type": "t",
            "source": "/s",
            "id": "1",
            "specversion": "1.0",
            "ext": "Euro € x",
            "time": datetime(2020, 1, 1, tzinfo=UTC),
            "datacontenttype": "application/json",
        },
        {"a": 1},
    )


@pytest.mark.parametrize("encode", [sdk_http.to_binary, sdk_http.to_structured])
def test_decodes_what_the_official_sdk_sends(encode: Any) -> None:
    message = encode(_sdk_event(), JSONFormat())
    event = from_http(message.headers, message.body)
    assert event.attributes["ext"] == "Euro € x" and event.json() == {"a": 1}
    assert event.time is not None and event.time.year == 2020


@pytest.mark.parametrize("encode", [to_binary, to_structured])
def test_the_official_sdk_decodes_what_wisp_sends(encode: Any) -> None:
    event = CloudEvent({**BASE, "ext": "Euro € x", "datacontenttype": "application/json"}, {"a": 1})
    headers, body = encode(event)
    got = sdk_http.from_http(sdk_http.HTTPMessage(headers=headers, body=body), JSONFormat())
    assert got.get_extension("ext") == "Euro € x" and got.get_data() in ({"a": 1}, b'{"a":1}')
