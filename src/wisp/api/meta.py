"""Object-metadata helpers shared by validation and controllers.

Name syntax checks as Kubernetes' `apimachinery/pkg/util/validation` (they return the same
explanations, so errors read like `kubectl` users expect), Knative-style status conditions with a
`ConditionSet` that derives the happy condition from its dependents, timestamps and owner
references. Everything works on plain wire-form dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from wisp import clock

# -- names --------------------------------------------------------------------------------------------

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
CONFIG_KEY_MAX = 253

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label_errors(value: str) -> list[str]:
    """Why `value` is not a DNS-1123 label (empty list when it is one)."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL_RE.match(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                    "or '-', and must start and end with an alphanumeric character (e.g. 'my-name', "
                    "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(_max_len(DNS1035_LABEL_MAX))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                    "start with an alphabetic character, and end with an alphanumeric character "
                    "(e.g. 'my-name', or 'abc-123', regex used for validation is "
                    "'[a-z]([-a-z0-9]*[a-z0-9])?')")
    return errs


def as_name_prefix(value: str) -> str:
    """What a `generateName` is checked as: a trailing dash is fine since a suffix follows it."""
    return value[:-1] + "a" if value.endswith("-") else value


def is_dns1123_label(value: Any) -> bool:
    return isinstance(value, str) and not dns1123_label_errors(value)


def is_dns1123_subdomain(value: Any) -> bool:
    return isinstance(value, str) and not dns1123_subdomain_errors(value)


def is_dns1035_label(value: Any) -> bool:
    return isinstance(value, str) and not dns1035_label_errors(value)


def qualified_name_errors(value: str) -> list[str]:
    """Why `value` is not a label/annotation key (`[prefix/]name`, prefix a DNS-1123 subdomain)."""
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        return ["prefix part must be non-empty"]
    if prefix.count("/"):
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs = [f"prefix part {m}" for m in dns1123_subdomain_errors(prefix)] if slash else []
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part {_max_len(QUALIFIED_NAME_MAX)}")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or "
                    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(_max_len(LABEL_VALUE_MAX))
    if not _LABEL_VALUE_RE.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                    "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', "
                    "or 'my_value', or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
    return errs


def config_key_errors(value: str) -> list[str]:
    """Why `value` cannot be a Secret/ConfigMap data key (it becomes a file name when mounted)."""
    errs = []
    if len(value) > CONFIG_KEY_MAX:
        errs.append(_max_len(CONFIG_KEY_MAX))
    if not _CONFIG_KEY_RE.match(value):
        errs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    "(e.g. 'key.name', or 'KEY_NAME', or 'key-name', regex used for validation is "
                    "'[-._a-zA-Z0-9]+')")
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


# -- time ---------------------------------------------------------------------------------------------

rfc3339 = clock.rfc3339  # Kubernetes' timestamp form; re-exported because conditions use it


# -- owner references ---------------------------------------------------------------------------------

def owner_reference(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """A reference from a child to `owner`; deleting the owner then cascades to the child."""
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The owner reference marked `controller: true`, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


# -- conditions ---------------------------------------------------------------------------------------

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
SEVERITY_ERROR, SEVERITY_WARNING, SEVERITY_INFO = "", "Warning", "Info"


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status")
    if not isinstance(status, dict):
        status = obj["status"] = {}
    conds = status.get("conditions")
    if not isinstance(conds, list):
        conds = status["conditions"] = []
    return conds


def get_condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition of type `ctype` in `obj.status.conditions`, or None."""
    status = obj.get("status")
    conds = status.get("conditions") if isinstance(status, dict) else None
    for cond in conds if isinstance(conds, list) else []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def set_condition(obj: dict[str, Any], ctype: str, status: str, reason: str = "", message: str = "",
                  severity: str = "", *, now: float) -> bool:
    """Set one condition in place; True if anything changed.

    `lastTransitionTime` moves only when the status flips, so clients can tell how long an object
    has been (un)ready. Empty reason/message/severity are omitted, as Go's `omitempty` does.
    Conditions stay sorted by type so stored objects compare stably.
    """
    if status not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    conds = _conditions(obj)
    old = get_condition(obj, ctype)
    new: dict[str, Any] = {"type": ctype, "status": status}
    for name, value in (("severity", severity), ("reason", reason), ("message", message)):
        if value:
            new[name] = value
    if old is not None and old.get("status") == status and old.get("lastTransitionTime"):
        new["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        new["lastTransitionTime"] = rfc3339(now)
    if old == new:
        return False
    conds[:] = sorted([c for c in conds if c is not old] + [new], key=lambda c: str(c.get("type", "")))
    return True


def is_true(obj: dict[str, Any], ctype: str) -> bool:
    cond = get_condition(obj, ctype)
    return cond is not None and cond.get("status") == TRUE


class ConditionSet:
    """A happy condition (usually `Ready`) and the conditions it depends on.

    As Knative's `apis.ConditionSet`: a dependent that is False makes the happy condition False
    with the dependent's reason and message; otherwise an Unknown (or missing) dependent makes it
    Unknown; only when every dependent is True is it True. Warning/Info dependents never gate it.
    """

    def __init__(self, happy: str, dependents: Sequence[str] = ()) -> None:
        self.happy = happy
        self.dependents = tuple(d for d in dependents if d != happy)

    def initialize(self, obj: dict[str, Any], now: float) -> bool:
        """Give every condition that is not yet present the status Unknown."""
        changed = False
        for ctype in (self.happy, *self.dependents):
            if get_condition(obj, ctype) is None:
                changed |= set_condition(obj, ctype, UNKNOWN, now=now)
        return changed

    def mark_true(self, obj: dict[str, Any], ctype: str, now: float) -> bool:
        changed = set_condition(obj, ctype, TRUE, now=now)
        return self.recompute(obj, now) or changed

    def mark_false(self, obj: dict[str, Any], ctype: str, reason: str, message: str, now: float) -> bool:
        changed = set_condition(obj, ctype, FALSE, reason, message, now=now)
        return self.recompute(obj, now) or changed

    def mark_unknown(self, obj: dict[str, Any], ctype: str, reason: str, message: str, now: float) -> bool:
        changed = set_condition(obj, ctype, UNKNOWN, reason, message, now=now)
        return self.recompute(obj, now) or changed

    def recompute(self, obj: dict[str, Any], now: float) -> bool:
        """Derive the happy condition from the dependents; True if it changed.

        With no dependents the happy condition is set directly by its owner and left alone here.
        """
        if not self.dependents:
            return False
        conds = [self._dependent(obj, ctype) for ctype in self.dependents]
        gating = [c for c in conds if c.get("severity", SEVERITY_ERROR) == SEVERITY_ERROR]
        failed = _latest([c for c in gating if c.get("status") == FALSE])
        if failed is not None:
            return set_condition(obj, self.happy, FALSE, failed.get("reason", ""),
                                 failed.get("message", ""), now=now)
        unknown = _latest([c for c in gating if c.get("status") != TRUE])
        if unknown is not None:
            return set_condition(obj, self.happy, UNKNOWN, unknown.get("reason", ""),
                                 unknown.get("message", ""), now=now)
        return set_condition(obj, self.happy, TRUE, now=now)

    def is_happy(self, obj: dict[str, Any]) -> bool:
        return is_true(obj, self.happy)

    @staticmethod
    def _dependent(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
        return get_condition(obj, ctype) or {"type": ctype, "status": UNKNOWN}


def _latest(conds: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently transitioned condition (Knative reports the newest failure); ties keep order."""
    best: dict[str, Any] | None = None
    for cond in conds:
        if best is None or str(cond.get("lastTransitionTime", "")) > str(best.get("lastTransitionTime", "")):
            best = cond
    return best
