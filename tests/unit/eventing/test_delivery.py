"""DeliverySpec parsing, defaulting, retry classification and backoff numbers."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wisp.eventing.delivery import (
    MAX_BACKOFF,
    DeliveryPolicy,
    Destination,
    InvalidDelivery,
    KReference,
    Verdict,
    backoff,
    dead_letter_extensions,
    effective_delivery,
    on_failure,
    parse_delivery,
    parse_iso8601_duration,
    parse_retry_after,
    retry_delay,
    should_retry,
    validate_delivery,
    with_dead_letter_extensions,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


# -- ISO-8601 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.2S", 0.2),
        ("PT1S", 1.0),
        ("PT1M30S", 90.0),
        ("PT1.5M", 90.0),
        ("PT0,5S", 0.5),
        ("P1DT2H", 93_600.0),
        ("P1W", 604_800.0),
        ("PT0S", 0.0),
        ("-PT1S", -1.0),
    ],
)
def test_iso8601_durations(text: str, seconds: float) -> None:
    assert parse_iso8601_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "1S", "PT1", "0.2s", "PT1S2M", "P1H", "10s"])
def test_iso8601_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso8601_duration(text)


# -- parsing ----------------------------------------------------------------------------------


def test_parse_full_spec() -> None:
    policy = parse_delivery(
        {
            "retry": 5,
            "backoffPolicy": "exponential",
            "backoffDelay": "PT0.5S",
            "timeout": "PT10S",
            "retryAfterMax": "PT30S",
            "format": "json",
            "deadLetterSink": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "dls"},
                "uri": "/errors",
            },
        }
    )
    assert policy == DeliveryPolicy(
        retry=5,
        backoff_policy="exponential",
        backoff_delay=0.5,
        timeout=10.0,
        retry_after_max=30.0,
        format="json",
        dead_letter_sink=Destination(KReference("serving.knative.dev/v1", "Service", "dls"), "/errors"),
    )
    assert policy.max_attempts == 6


def test_absent_and_empty_specs() -> None:
    assert parse_delivery(None) is None
    empty = parse_delivery({})
    assert empty is not None and empty.is_empty() and empty.retries == 0


def test_validation_reports_every_field_with_its_path() -> None:
    errors = validate_delivery(
        {
            "retry": -1,
            "backoffPolicy": "fibonacci",
            "backoffDelay": "0.2s",
            "timeout": "PT0S",
            "retryAfterMax": "-PT1S",
            "format": "xml",
            "deadLetterSink": {},
        },
        path="spec.delivery",
    )
    assert sorted(e.field for e in errors) == [
        "spec.delivery.backoffDelay",
        "spec.delivery.backoffPolicy",
        "spec.delivery.deadLetterSink",
        "spec.delivery.format",
        "spec.delivery.retry",
        "spec.delivery.retryAfterMax",
        "spec.delivery.timeout",
    ]
    assert any(e.render() == "invalid value: -1: expected at least 0: spec.delivery.retry" for e in errors)


def test_parse_raises_with_all_errors() -> None:
    with pytest.raises(InvalidDelivery) as info:
        parse_delivery({"retry": "3", "backoffDelay": 5}, path="spec.subscribers[0].delivery")
    assert [e.field for e in info.value.errors] == [
        "spec.subscribers[0].delivery.retry",
        "spec.subscribers[0].delivery.backoffDelay",
    ]


@pytest.mark.parametrize(
    ("sink", "field"),
    [
        ({"uri": "/relative"}, "spec.delivery.deadLetterSink.uri"),
        ({"ref": {"kind": "Service", "name": "x"}}, "spec.delivery.deadLetterSink.ref.apiVersion"),
        ({"ref": {"apiVersion": "v1", "kind": "Service"}}, "spec.delivery.deadLetterSink.ref.name"),
        ("http://x", "spec.delivery.deadLetterSink"),
    ],
)
def test_dead_letter_sink_validation(sink: object, field: str) -> None:
    assert [e.field for e in validate_delivery({"deadLetterSink": sink})] == [field]


def test_dead_letter_sink_absolute_uri_alone_is_fine() -> None:
    policy = parse_delivery({"deadLetterSink": {"uri": "http://dls.default.svc/"}})
    assert policy is not None and policy.dead_letter_sink == Destination(uri="http://dls.default.svc/")


# -- Broker default vs Trigger override ---------------------------------------------------------


def test_trigger_with_any_option_ignores_broker_delivery_entirely() -> None:
    broker = DeliveryPolicy(
        retry=10,
        backoff_policy="exponential",
        backoff_delay=0.2,
        dead_letter_sink=Destination(uri="http://dls/"),
    )
    trigger = DeliveryPolicy(retry=1)
    assert effective_delivery(trigger, broker) == trigger  # no DLS inherited: Knative semantics


def test_empty_trigger_delivery_falls_back_to_broker_then_to_nothing() -> None:
    broker = DeliveryPolicy(retry=10)
    assert effective_delivery(DeliveryPolicy(), broker) is broker
    assert effective_delivery(None, broker) is broker
    assert effective_delivery(None, None) == DeliveryPolicy()


# -- retry classification -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, 500, 502, 503, 504, 599, 404, 408, 409, 429])
def test_retryable(status: int | None) -> None:
    assert should_retry(status)


@pytest.mark.parametrize("status", [100, 200, 202, 301, 400, 401, 403, 405, 410, 413, 415, 422])
def test_not_retryable(status: int) -> None:
    assert not should_retry(status)


# -- backoff ----------------------------------------------------------------------------------------


def test_linear_backoff_first_retry_is_one_delay() -> None:
    policy = DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=0.2)
    assert [backoff(policy, n) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.6])


def test_exponential_backoff_is_delay_times_two_to_the_n() -> None:
    policy = DeliveryPolicy(retry=4, backoff_policy="exponential", backoff_delay=0.2)
    assert [backoff(policy, n) for n in (1, 2, 3, 4)] == pytest.approx([0.4, 0.8, 1.6, 3.2])


def test_no_wait_without_both_policy_and_delay() -> None:
    assert backoff(DeliveryPolicy(retry=3, backoff_delay=1.0), 2) == 0.0
    assert backoff(DeliveryPolicy(retry=3, backoff_policy="linear"), 2) == 0.0


def test_backoff_is_capped() -> None:
    capped = DeliveryPolicy(backoff_policy="exponential", backoff_delay=1.0, backoff_max=5.0)
    assert backoff(capped, 2) == 4.0
    assert backoff(capped, 3) == 5.0
    huge = DeliveryPolicy(backoff_policy="exponential", backoff_delay=1.0)
    assert backoff(huge, 5000) == MAX_BACKOFF


@given(st.sampled_from(["linear", "exponential"]), st.floats(0.001, 100), st.integers(1, 200))
def test_backoff_never_decreases_and_stays_finite(policy_name: str, delay: float, n: int) -> None:
    policy = DeliveryPolicy(backoff_policy=policy_name, backoff_delay=delay)  # type: ignore[arg-type]
    assert 0 < backoff(policy, n) <= backoff(policy, n + 1) <= MAX_BACKOFF


# -- Retry-After ---------------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", NOW) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", NOW) == 0.0  # in the past
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_retry_after_honoured_only_when_capped_and_on_429_or_503() -> None:
    policy = DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=1.0, retry_after_max=10.0)
    assert retry_delay(policy, 1, status=429, retry_after="5", now=NOW) == 5.0
    assert retry_delay(policy, 1, status=503, retry_after="60", now=NOW) == 10.0  # capped
    assert retry_delay(policy, 2, status=503, retry_after="0", now=NOW) == 2.0  # backoff wins
    assert retry_delay(policy, 1, status=500, retry_after="5", now=NOW) == 1.0  # not 429/503
    ignoring = DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=1.0, retry_after_max=0.0)
    assert retry_delay(ignoring, 1, status=429, retry_after="5", now=NOW) == 1.0
    unset = DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=1.0)
    assert retry_delay(unset, 1, status=429, retry_after="5", now=NOW) == 1.0


# -- the decision after a failure ------------------------------------------------------------------------


def test_on_failure_retries_then_dead_letters() -> None:
    policy = DeliveryPolicy(
        retry=2,
        backoff_policy="exponential",
        backoff_delay=0.2,
        dead_letter_sink=Destination(uri="http://dls/"),
    )
    first, second = on_failure(policy, 1, status=503), on_failure(policy, 2, status=None)
    assert (first.action, second.action) == ("retry", "retry")
    assert (first.delay, second.delay) == pytest.approx((0.4, 0.8))
    assert on_failure(policy, 3, status=503) == Verdict("dead_letter")
    assert on_failure(policy, 1, status=400) == Verdict("dead_letter")  # not retryable


def test_on_failure_without_sink_drops() -> None:
    assert on_failure(DeliveryPolicy(), 1, status=500) == Verdict("drop")


# -- dead-letter extensions ------------------------------------------------------------------------------


def test_dead_letter_extensions() -> None:
    ext = dead_letter_extensions("http://sub.default.svc/", 503, b"overloaded")
    assert ext == {
        "knativeerrordest": "http://sub.default.svc/",
        "knativeerrorcode": 503,
        "knativeerrordata": base64.b64encode(b"overloaded").decode(),
    }
    transport = dead_letter_extensions("http://x/", None)
    assert transport == {"knativeerrordest": "http://x/", "knativeerrorcode": 500}


def test_error_data_truncated_to_1024_valid_base64_chars() -> None:
    body = bytes(range(256)) * 8  # 2048 bytes
    data = str(dead_letter_extensions("http://x/", 500, body)["knativeerrordata"])
    assert len(data) == 1024
    assert base64.b64decode(data, validate=True) == body[:768]


def test_with_dead_letter_extensions_copies_and_replaces() -> None:
    attrs = {"id": "1", "type": "t", "knativeerrorcode": 404, "knativeerrordata": "old"}
    out = with_dead_letter_extensions(attrs, destination="http://s/", status=500)
    assert out == {"id": "1", "type": "t", "knativeerrordest": "http://s/", "knativeerrorcode": 500}
    assert attrs["knativeerrorcode"] == 404  # input untouched
