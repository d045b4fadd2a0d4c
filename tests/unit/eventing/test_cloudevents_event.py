"""The CloudEvent type: attribute naming, the type system, canonical strings, derived events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from wisp.eventing import cloudevents as ce
from wisp.eventing.cloudevents import (
    CloudEvent,
    InvalidEventError,
    UnsupportedSpecVersionError,
    canonical_string,
    format_timestamp,
    parse_timestamp,
)

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def make(**attrs: Any) -> CloudEvent:
    return CloudEvent({**BASE, **attrs})


def test_public_surface_is_pinned() -> None:
    assert {
        "CloudEvent",
        "from_http",
        "to_binary",
        "to_structured",
        "to_batch",
        "events_from_http",
        "from_json",
        "to_json",
        "from_json_batch",
        "to_json_batch",
        "CloudEventError",
    } <= set(ce.__all__)
    assert all(hasattr(ce, name) for name in ce.__all__)


# -- names (spec §1.2) --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "abc123", "x" * 30, "1abc"])
def test_lowercase_alphanumeric_names_are_accepted_even_long_or_digit_first(name: str) -> None:
    assert make(**{name: "v"}).attributes[name] == "v"


@pytest.mark.parametrize("name", ["MyExt", "my-ext", "my_ext", "my.ext", "", "data", "ümlaut"])
def test_other_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        make(**{name: "v"})
    assert caught.value.attribute == name
    assert caught.value.status == 400


# -- required attributes and specversion --------------------------------------------------------


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_required_attributes_must_be_present(missing: str) -> None:
    attrs = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(InvalidEventError) as caught:
        CloudEvent(attrs)
    assert caught.value.attribute == missing


@pytest.mark.parametrize("name", ["id", "source", "type", "subject", "dataschema", "datacontenttype"])
def test_present_core_string_attributes_must_not_be_empty(name: str) -> None:
    with pytest.raises(InvalidEventError, match="must not be empty"):
        make(**{name: ""})


def test_none_means_unset() -> None:
    assert "subject" not in make(subject=None).attributes


def test_unknown_spec_version_is_its_own_error() -> None:
    with pytest.raises(UnsupportedSpecVersionError, match=r"0\.9"):
        make(specversion="0.9")
    with pytest.raises(InvalidEventError):
        make(specversion=1.0)


def test_spec_version_03_is_accepted_with_its_own_core_attributes() -> None:
    event = make(specversion="0.3", schemaurl="/relative/schema", datacontentencoding="base64")
    assert event.dataschema == "/relative/schema"
    assert event.extensions == {}


def test_core_attributes_must_be_strings() -> None:
    with pytest.raises(InvalidEventError, match="must be a string"):
        make(id=25)


# -- the type system (spec §1.3) ----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -(2**31), 2**31 - 1, True, False, "text"])
def test_extension_values_keep_their_json_type(value: Any) -> None:
    got = make(ext=value).attributes["ext"]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 1.5, [1], {"a": 1}])
def test_out_of_range_or_untyped_extension_values_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidEventError) as caught:
        make(ext=value)
    assert caught.value.attribute == "ext"


@pytest.mark.parametrize("bad", ["a\nb", "\x00", "\x7f", "\x85", "\ud800", "\ufdd0", "\ufffe", "\U0010ffff"])
def test_strings_reject_controls_surrogates_and_noncharacters(bad: str) -> None:
    with pytest.raises(InvalidEventError):
        make(subject=bad)


@pytest.mark.parametrize(
    "good", ["Euro € 😀", "ünïcode", "tab-free text with spaces", "\ufffd", "\U0001fffd"]
)
def test_other_unicode_is_allowed_in_strings(good: str) -> None:
    assert make(subject=good).subject == good


def test_python_values_are_stored_as_canonical_strings() -> None:
    event = make(
        ext=b"Ma",
        when=datetime(2023, 3, 31, 15, 12, tzinfo=UTC),
        time=datetime(2020, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1))),
    )
    assert event.attributes["ext"] == "TWE="
    assert event.attributes["when"] == "2023-03-31T15:12:00Z"
    assert event.attributes["time"] == "2020-01-01T01:00:00+01:00"
    assert event.time == datetime(2020, 1, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (-7, "-7"),
        ("x", "x"),
        (b"\x00\xff", "AP8="),
        (datetime(2018, 4, 5, 17, 31, 0, 250000, tzinfo=UTC), "2018-04-05T17:31:00.250000Z"),
    ],
)
def test_canonical_strings(value: Any, text: str) -> None:
    assert canonical_string(value) == text


# -- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2018-04-05T17:31:00Z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05t17:31:00z", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T18:31:00+01:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T16:31:00-01:00", datetime(2018, 4, 5, 17, 31, tzinfo=UTC)),
        ("2018-04-05T17:31:00.123456789Z", datetime(2018, 4, 5, 17, 31, 0, 123456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_parse_to_the_right_instant(text: str, instant: datetime) -> None:
    assert parse_timestamp(text) == instant


@pytest.mark.parametrize(
    "text",
    [
        "lunchtime",
        "2018-04-05T18:31Z",
        "2018-04-05T18:31:00",
        "2018-04-05 18:31:00Z",
        "2018-04-05T24:00:00Z",
        "2018-02-30T00:00:00Z",
        "2018-04-05T18:31:00+24:00",
        "2018-04-05T18:31:00+05",
        "2018-04-05T18:31:00X",
        "\uff12\uff10\uff11\uff18-04-05T18:31:00Z",  # full-width digits are not ASCII digits
    ],
)
def test_non_rfc3339_time_is_rejected(text: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        make(time=text)
    assert caught.value.attribute == "time"


def test_time_keeps_its_original_text_beyond_microseconds() -> None:
    assert make(time="2018-04-05T17:31:00.000000001Z").attributes["time"] == "2018-04-05T17:31:00.000000001Z"


def test_naive_datetimes_format_as_utc() -> None:
    assert format_timestamp(datetime(2020, 5, 6, 7, 8, 9)) == "2020-05-06T07:08:09Z"


# -- URIs and media types -----------------------------------------------------------------------


def test_dataschema_must_be_absolute_but_source_may_be_relative() -> None:
    assert make(source="#fragment", dataschema="urn:x:y").source == "#fragment"
    with pytest.raises(InvalidEventError) as caught:
        make(dataschema="/relative")
    assert caught.value.attribute == "dataschema"


@pytest.mark.parametrize("ctype", ["text/plain", "application/json; charset=utf-8", "application/vnd.a+json"])
def test_media_types_are_accepted(ctype: str) -> None:
    assert make(datacontenttype=ctype).datacontenttype == ctype


@pytest.mark.parametrize("ctype", ["xyz", "text/", "/json", "text plain"])
def test_non_media_types_are_rejected(ctype: str) -> None:
    with pytest.raises(InvalidEventError):
        make(datacontenttype=ctype)


# -- value semantics ----------------------------------------------------------------------------


def test_events_are_immutable_hashable_values() -> None:
    event = make(ext="a")
    with pytest.raises(AttributeError):
        event.data = b"x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        event.attributes["ext"] = "b"  # type: ignore[index]
    assert event == make(ext="a") and hash(event) == hash(make(ext="a"))
    assert event != make(ext="b")
    assert len({event, make(ext="a")}) == 1


def test_with_attributes_adds_replaces_and_removes_and_revalidates() -> None:
    event = make(ext="a", subject="s")
    changed = event.with_attributes(ext="b", knativebrokerttl=255, subject=None)
    assert changed.attributes == {**BASE, "ext": "b", "knativebrokerttl": 255}
    assert event.attributes["ext"] == "a"
    with pytest.raises(InvalidEventError):
        event.with_attributes(Bad="x")


def test_create_fills_id_and_spec_version_but_never_time() -> None:
    one, two = CloudEvent.create("t", "/s"), CloudEvent.create("t", "/s")
    assert one.specversion == "1.0" and one.id != two.id and one.time is None


def test_extensions_view_excludes_core_attributes() -> None:
    assert make(subject="s", ext=1).extensions == {"ext": 1}


@pytest.mark.parametrize(
    ("ctype", "data", "body"),
    [
        (None, None, b""),
        (None, b"\x00raw", b"\x00raw"),
        (None, {"a": [1, "é"]}, '{"a":[1,"é"]}'.encode()),
        (None, "a string", b'"a string"'),
        ("application/json", "a string", b'"a string"'),
        ("text/plain", "héllo", "héllo".encode()),
    ],
)
def test_data_bytes_is_the_binary_mode_body(ctype: str | None, data: Any, body: bytes) -> None:
    assert CloudEvent({**BASE, "datacontenttype": ctype}, data).data_bytes() == body


def test_json_view_parses_bytes_and_text_but_not_json_values_twice() -> None:
    assert CloudEvent(BASE, b'{"a":1}').json() == {"a": 1}
    assert CloudEvent(BASE, '{"a":1}').json() == '{"a":1}'
    assert CloudEvent({**BASE, "datacontenttype": "text/plain"}, "[1]").json() == [1]


def test_bytearray_data_is_frozen_into_bytes() -> None:
    assert CloudEvent(BASE, bytearray(b"ab")).data == b"ab"


def test_repr_stays_short_for_large_payloads() -> None:
    assert "<65536 bytes>" in repr(CloudEvent(BASE, bytes(65536)))
    assert len(repr(CloudEvent(BASE, {"k": "x" * 10_000}))) < 300
