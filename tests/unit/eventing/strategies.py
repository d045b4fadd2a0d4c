"""Hypothesis strategies for valid CloudEvents, shared by the codec round-trip tests."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from hypothesis import strategies as st

from wisp.eventing.cloudevents import CloudEvent, format_timestamp

CORE = {"id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time"}

# Spec §1.3 String: no control characters, surrogates or noncharacters (Cn covers the latter).
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn")), max_size=40)
nonempty_texts = texts.filter(bool)
names = st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True).filter(lambda n: n not in CORE | {"data"})
ext_values = st.one_of(texts, st.booleans(), st.integers(-(2**31), 2**31 - 1))
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
text_types = st.sampled_from(["text/plain", "text/plain; charset=utf-8", "application/xml", "text/csv"])
json_types = st.sampled_from(
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "text/json"]
)


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str | None, Any]:
    """(datacontenttype, data) pairs that the JSON format represents without loss."""
    kind = draw(st.sampled_from(["none", "bytes", "json", "text"]))
    if kind == "none":
        return draw(st.one_of(st.none(), text_types, json_types)), None
    if kind == "bytes":
        return draw(st.one_of(st.none(), text_types, json_types, st.just("application/octet-stream"))), draw(
            st.binary(min_size=1, max_size=300)
        )
    if kind == "json":
        return draw(json_types), draw(json_values.filter(lambda v: v is not None))
    return draw(text_types), draw(texts)


@st.composite
def events(draw: st.DrawFn) -> CloudEvent:
    ctype, data = draw(payloads())
    attrs: dict[str, Any] = draw(st.dictionaries(names, ext_values, max_size=5))
    attrs.update(
        specversion="1.0",
        id=draw(nonempty_texts),
        type=draw(nonempty_texts),
        source=draw(st.one_of(nonempty_texts, st.just("https://example.com/x"))),
        datacontenttype=ctype,
    )
    if draw(st.booleans()):
        attrs["time"] = format_timestamp(draw(st.datetimes(timezones=st.just(UTC))))
    if draw(st.booleans()):
        attrs["subject"] = draw(nonempty_texts)
    if draw(st.booleans()):
        attrs["dataschema"] = "urn:schema:" + draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
    return CloudEvent(attrs, data)
