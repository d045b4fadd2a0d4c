"""Knative DeliverySpec: parsing, validation, Broker/Trigger defaulting and the retry math.

Everything here is pure. The dispatcher asks three questions after a failed attempt — retry
at all (`should_retry`), how long to wait (`retry_delay`), and what to do when retries run out
(`on_failure` folds the three together) — and builds dead-letter attributes with
`with_dead_letter_extensions`.

Conventions, matching the Knative docs (spec §2.9):

* `retry` counts retries *after* the first attempt; total attempts = retry + 1.
* The n-th retry (n = 1 for the first) waits `backoffDelay * n` (linear) or
  `backoffDelay * 2^n` (exponential), only when both policy and delay are set, else no wait.
  Go Knative passes a 0-based index instead; wisp follows the documented formula.
* `Retry-After` (seconds or an HTTP date) on 429/503 is honoured only when `retryAfterMax` is
  set and non-zero (Knative's `delivery-retryafter` flag is off by default; `PT0S` means ignore):
  the wait becomes `max(backoff, min(Retry-After, retryAfterMax))`.
* A Broker's delivery is a default used only when the Trigger sets no delivery option at all.
"""

from __future__ import annotations

import base64
import email.utils
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from wisp.api.errors import FieldError

BackoffPolicy = Literal["linear", "exponential"]
Format = Literal["json", "binary"]

MAX_BACKOFF = 86_400.0
"""Ceiling on any computed wait. Exponential backoff overflows quickly (retry 40 at PT1S is
~35,000 years); a retry further out than a day is operationally a dead letter, and a finite
bound keeps `retry_at` storable."""

RETRYABLE_STATUS = frozenset({404, 408, 409, 429})
RETRY_AFTER_STATUS = frozenset({429, 503})
ERROR_DATA_MAX_CHARS = 1024

ERROR_DEST = "knativeerrordest"
ERROR_CODE = "knativeerrorcode"
ERROR_DATA = "knativeerrordata"


class InvalidDelivery(ValueError):
    """A DeliverySpec failed validation; `errors` carries every problem with its field path."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.render() for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class KReference:
    """`duckv1.KReference`: a Kubernetes-style pointer to an addressable object."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Destination:
    """`duckv1.Destination`: a ref, a URI, or a URI relative to the ref's address."""

    ref: KReference | None = None
    uri: str | None = None


@dataclass(frozen=True)
class DeliveryPolicy:
    """A parsed DeliverySpec. Durations are seconds; `None` means the field was not set."""

    retry: int | None = None
    backoff_policy: BackoffPolicy | None = None
    backoff_delay: float | None = None
    backoff_max: float | None = None
    timeout: float | None = None
    retry_after_max: float | None = None
    dead_letter_sink: Destination | None = None
    format: Format | None = None

    @property
    def retries(self) -> int:
        return self.retry or 0

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def is_empty(self) -> bool:
        """True when no option is set (then a Broker's default applies)."""
        return all(getattr(self, f.name) is None for f in fields(self))


# -- ISO-8601 durations -----------------------------------------------------------------------

_NUM = r"(\d+(?:[.,]\d+)?)"
_ISO = re.compile(rf"([-+])?P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?"
                  rf"(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?")
# Seconds per unit; years and months use the Gregorian averages, as period.DurationApprox does.
_UNITS = (365.2425 * 86400, 30.436875 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def parse_iso8601_duration(text: str) -> float:
    """`PT0.2S`, `PT1M30S`, `P1DT2H`, `-PT1S` → seconds. Raises ValueError on anything else."""
    m = _ISO.fullmatch(text.strip()) if isinstance(text, str) else None
    parts = m.groups()[1:] if m else ()
    if m is None or not any(parts) or text.strip().endswith("T"):
        raise ValueError(f"invalid ISO-8601 duration {text!r} (expected e.g. PT0.2S)")
    total = sum(float(p.replace(",", ".")) * unit for p, unit in zip(parts, _UNITS, strict=True) if p)
    return -total if m.group(1) == "-" else total


# -- parsing and validation --------------------------------------------------------------------

def parse_delivery(raw: Mapping[str, Any] | None, *, path: str = "spec.delivery") -> DeliveryPolicy | None:
    """Validate a DeliverySpec dict and return the frozen policy; raises `InvalidDelivery`."""
    if raw is None:
        return None
    errors: list[FieldError] = []
    policy = _parse(raw, path, errors)
    if errors:
        raise InvalidDelivery(errors)
    return policy


def validate_delivery(raw: Mapping[str, Any] | None, *, path: str = "spec.delivery") -> list[FieldError]:
    """Every problem in a DeliverySpec dict, for admission (empty when valid)."""
    errors: list[FieldError] = []
    if raw is not None:
        _parse(raw, path, errors)
    return errors


def _parse(raw: Mapping[str, Any], path: str, errors: list[FieldError]) -> DeliveryPolicy:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "expected an object"))
        return DeliveryPolicy()
    return DeliveryPolicy(
        retry=_retry(raw.get("retry"), f"{path}.retry", errors),
        backoff_policy=cast(BackoffPolicy | None, _choice(
            raw.get("backoffPolicy"), ("linear", "exponential"), f"{path}.backoffPolicy", errors)),
        backoff_delay=_duration(raw.get("backoffDelay"), f"{path}.backoffDelay", errors, positive=False),
        backoff_max=_duration(raw.get("backoffMax"), f"{path}.backoffMax", errors, positive=False),
        timeout=_duration(raw.get("timeout"), f"{path}.timeout", errors, positive=True),
        retry_after_max=_duration(raw.get("retryAfterMax"), f"{path}.retryAfterMax", errors, positive=False),
        dead_letter_sink=parse_destination(raw.get("deadLetterSink"), f"{path}.deadLetterSink", errors),
        format=cast(Format | None, _choice(raw.get("format"), ("json", "binary"), f"{path}.format", errors)),
    )


def _retry(value: Any, path: str, errors: list[FieldError]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, f"invalid value: {value!r}: expected an integer"))
        return None
    if value < 0:
        errors.append(FieldError(path, f"invalid value: {value}: expected at least 0"))
        return None
    return value


def _choice(value: Any, allowed: tuple[str, ...], path: str, errors: list[FieldError]) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        errors.append(FieldError(path, f"invalid value: {value!r}: expected one of {', '.join(allowed)}",
                                 "FieldValueNotSupported"))
        return None
    return str(value)


def _duration(value: Any, path: str, errors: list[FieldError], *, positive: bool) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_iso8601_duration(value)
    except ValueError:
        errors.append(FieldError(path, f"invalid value: {value!r}: expected an ISO-8601 duration "
                                       "like PT0.2S"))
        return None
    if seconds < 0 or (positive and seconds == 0):
        bound = "greater than zero" if positive else "not negative"
        errors.append(FieldError(path, f"invalid value: {value}: must be {bound}"))
        return None
    return seconds


def parse_destination(raw: Any, path: str, errors: list[FieldError]) -> Destination | None:
    """Validate a Destination (`ref` and/or absolute `uri`), appending problems to `errors`."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "expected an object"))
        return None
    ref = _kref(raw.get("ref"), f"{path}.ref", errors)
    uri = raw.get("uri")
    if uri is not None and not isinstance(uri, str):
        errors.append(FieldError(f"{path}.uri", f"invalid value: {uri!r}: expected a string"))
        uri = None
    if raw.get("ref") is None:  # without a ref, the URI must stand on its own
        if not uri:
            errors.append(FieldError(path, "expected at least one, got none: [ref, uri]",
                                     "FieldValueRequired"))
        elif "://" not in uri:
            errors.append(FieldError(f"{path}.uri", f"invalid value: {uri}: relative URI is not "
                                                    "allowed when ref is absent"))
    return Destination(ref=ref, uri=uri or None)


def _kref(raw: Any, path: str, errors: list[FieldError]) -> KReference | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        errors.append(FieldError(path, "expected an object"))
        return None
    values: dict[str, str] = {}
    for key in ("apiVersion", "kind", "name"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            values[key] = value
        else:
            errors.append(FieldError(f"{path}.{key}", "missing field(s)", "FieldValueRequired"))
    if len(values) < 3:
        return None
    namespace = raw.get("namespace")
    return KReference(values["apiVersion"], values["kind"], values["name"],
                      namespace if isinstance(namespace, str) and namespace else None)


def effective_delivery(trigger: DeliveryPolicy | None, broker: DeliveryPolicy | None) -> DeliveryPolicy:
    """The policy a Trigger delivers with: its own if it sets anything, else its Broker's."""
    if trigger is not None and not trigger.is_empty():
        return trigger
    return broker if broker is not None else DeliveryPolicy()


# -- retry math ---------------------------------------------------------------------------------

def should_retry(status: int | None) -> bool:
    """Knative's SelectiveRetry: transport errors (None), 5xx, 404, 408, 409 and 429 retry."""
    return status is None or 500 <= status <= 599 or status in RETRYABLE_STATUS


def backoff(policy: DeliveryPolicy, attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1 = first retry)."""
    if policy.backoff_policy is None or policy.backoff_delay is None or attempt < 1:
        return 0.0
    if policy.backoff_policy == "linear":
        delay = policy.backoff_delay * attempt
    else:
        delay = policy.backoff_delay * math.ldexp(1.0, min(attempt, 1000))
    cap = MAX_BACKOFF if policy.backoff_max is None else min(policy.backoff_max, MAX_BACKOFF)
    return min(delay, cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A `Retry-After` header (delta-seconds or HTTP date) as seconds from `now`; None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(policy: DeliveryPolicy, attempt: int, *, status: int | None = None,
                retry_after: str | None = None, now: float = 0.0) -> float:
    """The wait before retry `attempt`, honouring a capped `Retry-After` on 429/503."""
    wait = backoff(policy, attempt)
    cap = policy.retry_after_max
    if not cap or status not in RETRY_AFTER_STATUS:
        return wait
    asked = parse_retry_after(retry_after, now)
    return wait if asked is None else max(wait, min(asked, cap))


@dataclass(frozen=True)
class Verdict:
    """What to do with an event after a failed attempt."""

    action: Literal["retry", "dead_letter", "drop"]
    delay: float = 0.0


def on_failure(policy: DeliveryPolicy, failures: int, *, status: int | None,
               retry_after: str | None = None, now: float = 0.0) -> Verdict:
    """Decide after the `failures`-th failed attempt (1 = the first delivery failed)."""
    if should_retry(status) and failures <= policy.retries:
        delay = retry_delay(policy, failures, status=status, retry_after=retry_after, now=now)
        return Verdict("retry", delay)
    return Verdict("dead_letter" if policy.dead_letter_sink is not None else "drop")


# -- dead letters -------------------------------------------------------------------------------

def error_data(body: bytes) -> str:
    """The response body base64-encoded, truncated *before* encoding so the result stays valid
    base64 of at most 1024 characters (768 raw bytes)."""
    raw_limit = ERROR_DATA_MAX_CHARS // 4 * 3
    return base64.b64encode(body[:raw_limit]).decode("ascii")


def dead_letter_extensions(destination: str, status: int | None, body: bytes = b"") -> dict[str, str | int]:
    """The `knativeerror*` extensions describing why delivery to `destination` failed."""
    ext: dict[str, str | int] = {ERROR_DEST: destination, ERROR_CODE: 500 if status is None else status}
    if body:
        ext[ERROR_DATA] = error_data(body)
    return ext


def with_dead_letter_extensions(attributes: Mapping[str, Any], *, destination: str, status: int | None,
                                body: bytes = b"") -> dict[str, Any]:
    """A copy of an event's attributes carrying the dead-letter extensions (old ones replaced)."""
    out = {k: v for k, v in attributes.items() if k not in (ERROR_DEST, ERROR_CODE, ERROR_DATA)}
    out.update(dead_letter_extensions(destination, status, body))
    return out
