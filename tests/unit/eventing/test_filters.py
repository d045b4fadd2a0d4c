"""Trigger filters: spec.filter.attributes, spec.filters dialects, admission validation."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from wisp.eventing.filters import compile_trigger_filter, validate_filter_attributes, validate_filters

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "42",
    "source": "https://example.com/orders",
    "type": "com.example.order.created",
    "subject": "Order-7",
    "flag": True,
    "count": 10,
    "empty": "",
}

try:
    HAVE_CESQL = importlib.util.find_spec("wisp.eventing.cesql") is not None
except ImportError:  # pragma: no cover
    HAVE_CESQL = False
needs_cesql = pytest.mark.skipif(not HAVE_CESQL, reason="wisp.eventing.cesql is not available yet")


def attrs_match(attributes: dict[str, str] | None, event: dict[str, Any] = EVENT) -> bool:
    return compile_trigger_filter(attributes, None)(event)


def filters_match(filters: list[dict[str, Any]], event: dict[str, Any] = EVENT) -> bool:
    return compile_trigger_filter(None, filters)(event)


# -- spec.filter.attributes ---------------------------------------------------------------------


@pytest.mark.parametrize("attributes", [None, {}])
def test_no_filter_matches_everything(attributes: dict[str, str] | None) -> None:
    assert attrs_match(attributes) and attrs_match(attributes, {"type": "x"})


def test_all_listed_attributes_must_equal_exactly() -> None:
    assert attrs_match({"type": "com.example.order.created", "source": "https://example.com/orders"})
    assert not attrs_match({"type": "com.example.order.created", "source": "https://example.com/other"})
    assert not attrs_match({"subject": "order-7"})  # case-sensitive


def test_empty_value_means_present_with_any_non_empty_value() -> None:
    assert attrs_match({"subject": ""})
    assert not attrs_match({"missing": ""})
    assert not attrs_match({"empty": ""})


def test_missing_attribute_never_matches_a_value() -> None:
    assert not attrs_match({"missing": "x"})


def test_non_string_extensions_compare_by_canonical_string() -> None:
    assert attrs_match({"flag": "true", "count": "10"})
    assert not attrs_match({"flag": "True"})


# -- which of filter / filters applies ----------------------------------------------------------


def test_non_empty_filters_override_filter_attributes() -> None:
    matcher = compile_trigger_filter({"type": "nope"}, [{"prefix": {"type": "com.example"}}])
    assert matcher(EVENT)


def test_empty_filters_fall_back_to_filter_attributes() -> None:
    assert not compile_trigger_filter({"type": "nope"}, [])(EVENT)


# -- dialects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"exact": {"type": "com.example.order.created"}}, True),
        ({"exact": {"type": "com.example.order"}}, False),
        ({"exact": {"subject": "order-7"}}, False),
        ({"exact": {"count": "10"}}, True),
        ({"prefix": {"type": "com.example."}}, True),
        ({"prefix": {"type": "org."}}, False),
        ({"suffix": {"type": ".created"}}, True),
        ({"suffix": {"type": ".deleted"}}, False),
        ({"suffix": {"flag": "ue"}}, True),
        ({"exact": {"missing": "x"}}, False),
        ({"prefix": {"missing": "x"}}, False),
        ({"suffix": {"missing": "x"}}, False),
    ],
)
def test_exact_prefix_suffix(spec: dict[str, Any], expected: bool) -> None:
    assert filters_match([spec]) is expected


def test_top_level_filters_are_anded() -> None:
    assert filters_match([{"prefix": {"type": "com."}}, {"suffix": {"type": "created"}}])
    assert not filters_match([{"prefix": {"type": "com."}}, {"suffix": {"type": "deleted"}}])


def test_all_any_not() -> None:
    yes, no = {"exact": {"id": "42"}}, {"exact": {"id": "43"}}
    assert filters_match([{"all": [yes, yes]}]) and not filters_match([{"all": [yes, no]}])
    assert filters_match([{"any": [no, yes]}]) and not filters_match([{"any": [no, no]}])
    assert filters_match([{"not": no}]) and not filters_match([{"not": yes}])


def test_not_of_a_missing_attribute_matches() -> None:
    assert filters_match([{"not": {"exact": {"missing": "x"}}}])


def test_nesting() -> None:
    spec = {
        "any": [
            {"all": [{"prefix": {"source": "https://"}}, {"not": {"suffix": {"type": ".deleted"}}}]},
            {"exact": {"subject": "never"}},
        ]
    }
    assert filters_match([spec])
    assert not filters_match([spec], {**EVENT, "type": "com.example.order.deleted"})


def test_filters_without_a_dialect_abstain_like_knative() -> None:
    # Validation rejects these; if one slips through it filters nothing rather than everything.
    assert filters_match([{}])
    assert filters_match([{"not": {}}])
    assert filters_match([{"any": [{}]}])
    assert not filters_match([{}, {"exact": {"id": "0"}}])
    assert filters_match([{"exact": {"id": ""}}])  # Knative materialises no filter for empty values


@needs_cesql
def test_cesql_dialect() -> None:
    assert filters_match([{"cesql": "type LIKE 'com.example.%' AND count > 5"}])
    assert not filters_match([{"cesql": "type = 'other'"}])


@needs_cesql
def test_cesql_evaluation_errors_do_not_match() -> None:
    assert not filters_match([{"cesql": "missingattr = 'x'"}])
    assert filters_match([{"not": {"cesql": "missingattr = 'x'"}}])


@needs_cesql
def test_cesql_combines_with_other_dialects() -> None:
    assert filters_match([{"all": [{"cesql": "subject = 'Order-7'"}, {"prefix": {"id": "4"}}]}])


# -- validation ---------------------------------------------------------------------------------


def fields(errors: list[Any]) -> list[str]:
    return [e.field for e in errors]


def test_valid_filters_produce_no_errors() -> None:
    filters = [
        {"exact": {"type": "x"}},
        {"all": [{"prefix": {"source": "h"}}, {"not": {"suffix": {"id": "1"}}}]},
        {"any": [{"exact": {"myext": "v"}}]},
    ]
    assert validate_filters(filters, "spec.filters") == []
    assert validate_filters(None, "spec.filters") == []
    assert validate_filters([], "spec.filters") == []


def test_multiple_dialects_in_one_object() -> None:
    errors = validate_filters([{"exact": {"a": "b"}, "suffix": {"a": "b"}}], "spec.filters")
    assert fields(errors) == ["spec.filters[0]"] and "multiple dialects found" in errors[0].message


def test_no_dialect_and_unknown_dialect() -> None:
    assert "no dialect" in validate_filters([{}], "spec.filters")[0].message
    assert fields(validate_filters([{"regex": {"a": "b"}}], "spec.filters")) == ["spec.filters[0].regex"]


def test_exact_prefix_suffix_take_one_non_empty_key_value() -> None:
    errors = validate_filters([{"exact": {"a": "1", "b": "2"}}], "spec.filters")
    assert errors[0].message == "Multiple items found, can have only one key-value"
    assert fields(validate_filters([{"prefix": {"a": ""}}], "spec.filters")) == ["spec.filters[0].prefix[a]"]
    assert fields(validate_filters([{"suffix": {}}], "spec.filters")) == ["spec.filters[0].suffix"]
    assert fields(validate_filters([{"exact": "type=x"}], "spec.filters")) == ["spec.filters[0].exact"]


@pytest.mark.parametrize("name", ["0invalid", "invALID", "my-ext", "my_ext"])
def test_attribute_names_must_be_lowercase_alphanumeric_starting_with_a_letter(name: str) -> None:
    errors = validate_filters([{"exact": {name: "v"}}], "spec.filters")
    assert fields(errors) == [f"spec.filters[0].exact[{name}]"]
    assert fields(validate_filter_attributes({name: "v"}, "spec.filter")) == [
        f"spec.filter.attributes[{name}]"
    ]


def test_filter_attributes_allow_empty_values() -> None:
    assert validate_filter_attributes({"type": "", "source": "x"}, "spec.filter") == []
    assert validate_filter_attributes(None, "spec.filter") == []


def test_all_and_any_need_at_least_one_nested_filter_and_errors_carry_nested_paths() -> None:
    assert fields(validate_filters([{"all": []}], "spec.filters")) == ["spec.filters[0].all"]
    assert fields(validate_filters([{"any": "nope"}], "spec.filters")) == ["spec.filters[0].any"]
    nested = [{"any": [{"exact": {"a": "b"}}, {"not": {"prefix": {"invALID": "x"}}}]}]
    assert fields(validate_filters(nested, "spec.filters")) == ["spec.filters[0].any[1].not.prefix[invALID]"]


def test_every_error_is_reported() -> None:
    errors = validate_filters([{"exact": {"Bad": ""}}, "not an object", {"all": []}], "spec.filters")
    assert fields(errors) == [
        "spec.filters[0].exact[Bad]",
        "spec.filters[0].exact[Bad]",
        "spec.filters[1]",
        "spec.filters[2].all",
    ]


@needs_cesql
def test_cesql_must_parse() -> None:
    errors = validate_filters([{"cesql": "this is wrong"}], "spec.filters")
    assert fields(errors) == ["spec.filters[0].cesql"] and "syntax error" in errors[0].message
    assert validate_filters([{"cesql": "type = 'dev.knative' AND ttl < 3"}], "spec.filters") == []
    assert fields(validate_filters([{"cesql": "  "}], "spec.filters")) == ["spec.filters[0].cesql"]
