"""The JSON event format and the JSON batch format."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from tests.unit.eventing.strategies import events
from wisp.eventing.cloudevents import (
    CloudEvent,
    InvalidEventError,
    MalformedEventError,
    from_dict,
    from_json,
    from_json_batch,
    to_dict,
    to_json,
    to_json_batch,
)

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def test_bytes_are_written_as_data_base64_whatever_the_content_type() -> None:
    for ctype in (None, "application/json", "text/plain"):
        obj = json.loads(to_json(CloudEvent({**BASE, "datacontenttype": ctype}, b"Ma")))
        assert obj["data_base64"] == "TWE=" and "data" not in obj


def test_json_values_are_written_inline_never_as_a_string_of_json() -> None:
    obj = json.loads(to_json(CloudEvent({**BASE, "datacontenttype": "application/json"}, {"a": 1})))
    assert obj["data"] == {"a": 1}


def test_reading_keeps_a_json_string_as_a_string() -> None:
    event = from_dict({**BASE, "data": '{"a": 1}'})
    assert event.data == '{"a": 1}'


def test_reading_text_data_for_a_non_json_type() -> None:
    event = from_dict({**BASE, "datacontenttype": "text/plain", "data": "hi"})
    assert event.data == "hi" and event.data_bytes() == b"hi"


def test_data_base64_reads_as_bytes() -> None:
    assert from_dict({**BASE, "data_base64": "TWE="}).data == b"Ma"


def test_null_data_and_null_attributes_are_unset() -> None:
    event = from_dict({**BASE, "data": None, "subject": None, "data_base64": None})
    assert event.data is None and "subject" not in event.attributes


def test_both_data_and_data_base64_is_invalid() -> None:
    with pytest.raises(InvalidEventError, match="both"):
        from_dict({**BASE, "data": "x", "data_base64": "TWE="})


@pytest.mark.parametrize("value", ["not base64!", "TWE", 42])
def test_bad_base64_is_rejected(value: Any) -> None:
    with pytest.raises((MalformedEventError, InvalidEventError)) as caught:
        from_dict({**BASE, "data_base64": value})
    assert caught.value.status == 400


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'"str"', b"\xff\xfe", b"NaN", b'{"a": NaN}'])
def test_bodies_that_are_not_one_json_object_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEventError) as caught:
        from_json(body)
    assert caught.value.status == 400


def test_spec_03_base64_data_uses_datacontentencoding() -> None:
    event = from_dict({**BASE, "specversion": "0.3", "datacontentencoding": "base64", "data": "TWE="})
    assert event.data == b"Ma" and "datacontentencoding" not in event.attributes
    obj = to_dict(event)
    assert obj["datacontentencoding"] == "base64" and obj["data"] == "TWE=" and "data_base64" not in obj
    assert from_dict(obj) == event


def test_large_data_round_trips() -> None:
    payload = bytes(range(256)) * 400  # 100 KiB
    event = CloudEvent(BASE, payload)
    assert from_json(to_json(event)).data == payload
    structured = CloudEvent({**BASE, "datacontenttype": "application/json"}, {"blob": "x" * 100_000})
    assert from_json(to_json(structured)) == structured


@settings(max_examples=100, deadline=None)
@given(events())
def test_json_format_round_trip_is_identity(event: CloudEvent) -> None:
    assert from_json(to_json(event)) == event


# -- batch --------------------------------------------------------------------------------------


def test_empty_batch() -> None:
    assert from_json_batch(b"[]") == []
    assert to_json_batch([]) == b"[]"


def test_batch_round_trip_keeps_order_and_duplicates() -> None:
    one = CloudEvent(BASE, {"n": 1})
    two = CloudEvent({**BASE, "id": "2"}, b"\x01")
    assert from_json_batch(to_json_batch([one, two, one])) == [one, two, one]


def test_batch_must_be_an_array_of_objects() -> None:
    with pytest.raises(MalformedEventError):
        from_json_batch(json.dumps(BASE).encode())
    with pytest.raises(MalformedEventError, match="batch member 1"):
        from_json_batch(json.dumps([BASE, 5]).encode())


def test_one_invalid_member_rejects_the_batch_and_says_which() -> None:
    with pytest.raises(InvalidEventError, match="batch member 1") as caught:
        from_json_batch(json.dumps([BASE, {**BASE, "id": ""}]).encode())
    assert caught.value.attribute == "id"


def test_batch_members_must_share_a_spec_version() -> None:
    with pytest.raises(InvalidEventError, match="specversion"):
        from_json_batch(json.dumps([BASE, {**BASE, "specversion": "0.3"}]).encode())
