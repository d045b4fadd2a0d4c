"""Name predicates, conditions, ConditionSet, timestamps and owner references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wisp.api import meta
from wisp.api.meta import ConditionSet, get_condition, owner_reference, rfc3339, set_condition

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize("value,label1035,label1123,subdomain", [
    ("hello", True, True, True),
    ("hello-world-2", True, True, True),
    ("1hello", False, True, True),
    ("hello.world", False, False, True),
    ("Hello", False, False, False),
    ("hello-", False, False, False),
    ("", False, False, False),
    ("a" * 63, True, True, True),
    ("a" * 64, False, False, True),
    (".".join(["a" * 63] * 4), False, False, False),  # 255 chars
])
def test_name_predicates(value, label1035, label1123, subdomain):
    assert meta.is_dns1035_label(value) is label1035
    assert meta.is_dns1123_label(value) is label1123
    assert meta.is_dns1123_subdomain(value) is subdomain


def test_non_strings_are_never_names():
    assert not meta.is_dns1123_subdomain(None)
    assert not meta.is_dns1035_label(42)


@given(st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_dns1035_label_is_a_dns1123_label(name):
    assert meta.is_dns1035_label(name)
    assert meta.is_dns1123_label(name)
    assert meta.is_dns1123_subdomain(name)


@pytest.mark.parametrize("key,ok", [
    ("app", True), ("app.kubernetes.io/name", True), ("serving.knative.dev/service", True),
    ("a/b/c", False), ("/name", False), ("example.com/", False), ("-app", False), ("a" * 64, False),
    ("Example.com/x", False),
])
def test_qualified_names(key, ok):
    assert (meta.qualified_name_errors(key) == []) is ok


# -- conditions -------------------------------------------------------------------------------------------

def test_set_condition_adds_and_reports_change():
    obj: dict = {}
    assert set_condition(obj, "Ready", "Unknown", "Deploying", "starting", now=T0)
    assert get_condition(obj, "Ready") == {
        "type": "Ready", "status": "Unknown", "reason": "Deploying", "message": "starting",
        "lastTransitionTime": "2023-11-14T22:13:20Z"}
    assert not set_condition(obj, "Ready", "Unknown", "Deploying", "starting", now=T0 + 5)


def test_transition_time_moves_only_when_status_changes():
    obj: dict = {}
    set_condition(obj, "Ready", "Unknown", "Deploying", now=T0)
    assert set_condition(obj, "Ready", "Unknown", "Still", "waiting", now=T0 + 10)
    assert get_condition(obj, "Ready")["lastTransitionTime"] == rfc3339(T0)
    assert set_condition(obj, "Ready", "True", now=T0 + 20)
    cond = get_condition(obj, "Ready")
    assert cond == {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(T0 + 20)}


def test_conditions_sorted_by_type_and_status_kept():
    obj = {"status": {"observedGeneration": 2, "url": "http://x"}}
    set_condition(obj, "RoutesReady", "True", now=T0)
    set_condition(obj, "ConfigurationsReady", "True", now=T0)
    assert [c["type"] for c in obj["status"]["conditions"]] == ["ConfigurationsReady", "RoutesReady"]
    assert obj["status"]["observedGeneration"] == 2


def test_set_condition_rejects_bad_status():
    with pytest.raises(ValueError):
        set_condition({}, "Ready", "yes", now=T0)


def test_rfc3339():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(T0 + 0.9) == "2023-11-14T22:13:20Z"


SERVICE = ConditionSet("Ready", ["ConfigurationsReady", "RoutesReady"])


def test_initialize_sets_all_unknown():
    obj: dict = {}
    assert SERVICE.initialize(obj, T0)
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]} == {
        "Ready": "Unknown", "ConfigurationsReady": "Unknown", "RoutesReady": "Unknown"}
    assert not SERVICE.initialize(obj, T0)


def test_ready_true_only_when_all_dependents_true():
    obj: dict = {}
    SERVICE.initialize(obj, T0)
    SERVICE.mark_true(obj, "ConfigurationsReady", T0)
    assert get_condition(obj, "Ready")["status"] == "Unknown"
    assert not SERVICE.is_happy(obj)
    SERVICE.mark_true(obj, "RoutesReady", T0)
    assert SERVICE.is_happy(obj)


def test_false_dependent_makes_ready_false_with_its_reason():
    obj: dict = {}
    SERVICE.mark_true(obj, "RoutesReady", T0)
    SERVICE.mark_false(obj, "ConfigurationsReady", "RevisionFailed",
                       "Revision hello-00001 failed with message: boom", T0 + 1)
    ready = get_condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RevisionFailed")
    assert ready["message"].endswith("boom")


def test_false_wins_over_unknown_and_newest_failure_is_reported():
    obj: dict = {}
    SERVICE.mark_false(obj, "RoutesReady", "Old", "old", T0)
    SERVICE.mark_false(obj, "ConfigurationsReady", "New", "new", T0 + 5)
    assert get_condition(obj, "Ready")["reason"] == "New"
    SERVICE.mark_unknown(obj, "ConfigurationsReady", "Deploying", "", T0 + 6)
    assert get_condition(obj, "Ready")["status"] == "False"
    assert get_condition(obj, "Ready")["reason"] == "Old"


def test_missing_dependent_counts_as_unknown():
    obj: dict = {}
    set_condition(obj, "RoutesReady", "True", now=T0)
    assert SERVICE.recompute(obj, T0)
    assert get_condition(obj, "Ready")["status"] == "Unknown"


def test_warning_dependents_do_not_gate_ready():
    obj: dict = {}
    SERVICE.mark_true(obj, "ConfigurationsReady", T0)
    set_condition(obj, "RoutesReady", "False", "CertificateMissing", "no cert", "Warning", now=T0)
    SERVICE.recompute(obj, T0)
    assert SERVICE.is_happy(obj)


def test_recompute_reports_no_change_when_stable():
    obj: dict = {}
    SERVICE.mark_true(obj, "ConfigurationsReady", T0)
    SERVICE.mark_true(obj, "RoutesReady", T0)
    assert not SERVICE.recompute(obj, T0 + 100)
    assert get_condition(obj, "Ready")["lastTransitionTime"] == rfc3339(T0)


def test_condition_set_without_dependents_leaves_happy_alone():
    cs = ConditionSet("Ready")
    obj: dict = {}
    cs.mark_false(obj, "Ready", "RevisionMissing", "gone", T0)
    assert get_condition(obj, "Ready")["status"] == "False"
    assert not cs.recompute(obj, T0)


def test_owner_reference():
    svc = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
           "metadata": {"name": "hello", "namespace": "default", "uid": "1234"}}
    ref = owner_reference(svc)
    assert ref == {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello",
                   "uid": "1234", "controller": True, "blockOwnerDeletion": True}
    assert owner_reference(svc, controller=False)["controller"] is False
    child = {"metadata": {"ownerReferences": [owner_reference(svc, controller=False), ref]}}
    assert meta.controller_of(child) == ref
