"""Service / Configuration / Revision / Route / DomainMapping rules (spec §1.2-1.4)."""

from __future__ import annotations

import pytest

from wisp.api.kinds import by_api_version
from wisp.api.validation import default_object, validate_object
from wisp.config import Config

from .samples import (
    CONFIGURATION,
    DOMAIN_MAPPING,
    HELLO,
    REVISION,
    ROUTE,
    TRAFFIC_SPLIT,
    at,
    check,
    clone,
    kind_of,
)

TRAFFIC = "spec.traffic"


@pytest.mark.parametrize("sample", [HELLO, TRAFFIC_SPLIT, ROUTE, CONFIGURATION, REVISION, DOMAIN_MAPPING])
def test_knative_samples_are_valid(sample):
    assert check(clone(sample)) == []


# -- metadata names ---------------------------------------------------------------------------------------

def test_name_or_generate_name_required():
    svc = clone(HELLO)
    del svc["metadata"]["name"]
    assert at(check(svc), "metadata.name") == ["name or generateName is required"]
    svc["metadata"]["generateName"] = "hello-"
    assert check(svc) == []


@pytest.mark.parametrize("name", ["Hello", "1hello", "hello_world", "hello.world", "a" * 64])
def test_service_name_must_be_dns1035_label(name):
    svc = clone(HELLO)
    svc["metadata"]["name"] = name
    (msg,) = at(check(svc), "metadata.name")
    assert msg.startswith(f"invalid value: {name} (not a DNS 1035 label")


def test_secret_may_have_dotted_name_but_service_may_not():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls.example.com"}}
    assert check(secret) == []
    svc = clone(HELLO)
    svc["metadata"]["name"] = "tls.example.com"
    assert at(check(svc), "metadata.name")


def test_bad_generate_name_prefix_reported_on_generate_name():
    route = clone(ROUTE)
    route["metadata"] = {"generateName": "Blue-"}
    assert "not a DNS 1035 label prefix" in at(check(route), "metadata.generateName")[0]


def test_autoscaling_annotation_on_service_metadata_rejected():
    svc = clone(HELLO)
    svc["metadata"]["annotations"] = {"autoscaling.knative.dev/min-scale": "1"}
    (msg,) = at(check(svc), "metadata.annotations")
    assert 'must be put under "spec.template.metadata.annotations"' in msg


def test_visibility_label_must_be_cluster_local():
    route = clone(ROUTE)
    route["metadata"]["labels"] = {"networking.knative.dev/visibility": "public"}
    assert at(check(route), "metadata.labels[networking.knative.dev/visibility]")
    route["metadata"]["labels"]["networking.knative.dev/visibility"] = "cluster-local"
    assert check(route) == []


# -- traffic ----------------------------------------------------------------------------------------------

def test_traffic_must_sum_to_100():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][0]["percent"] = 40
    assert at(check(svc), TRAFFIC) == ["Traffic targets sum to 90, want 100"]


def test_route_without_traffic_sums_to_zero():
    route = clone(ROUTE)
    route["spec"] = {}
    assert at(check(route), TRAFFIC) == ["Traffic targets sum to 0, want 100"]


def test_percent_out_of_range():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][0]["percent"] = 101
    svc["spec"]["traffic"][1]["percent"] = -1
    errs = check(svc)
    assert at(errs, "spec.traffic[0].percent") == ["expected 0 <= 101 <= 100"]
    assert at(errs, "spec.traffic[1].percent") == ["expected 0 <= -1 <= 100"]


def test_percent_must_be_an_integer():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][0]["percent"] = "50"
    assert "expected an integer" in at(check(svc), "spec.traffic[0].percent")[0]


def test_duplicate_tag():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][2]["tag"] = "current"
    (msg,) = at(check(svc), "spec.traffic[2].tag")
    assert msg.startswith('Multiple definitions for "current"')


def test_tag_must_be_dns1035_label():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][1]["tag"] = "Candidate_1"
    (msg,) = at(check(svc), "spec.traffic[1].tag")
    assert "not a DNS 1035 label" in msg


def test_revision_and_configuration_name_exclusive_in_route():
    route = clone(ROUTE)
    route["spec"]["traffic"][0]["configurationName"] = "blue-green-demo"
    assert at(check(route), "spec.traffic[0]") == [
        "expected exactly one, got both: revisionName, configurationName"]


def test_route_target_needs_revision_or_configuration():
    route = clone(ROUTE)
    del route["spec"]["traffic"][1]["configurationName"]
    assert at(check(route), "spec.traffic[1]") == [
        "expected exactly one, got neither: revisionName, configurationName"]


def test_configuration_name_not_allowed_in_service_traffic():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][2]["configurationName"] = "hello"
    assert at(check(svc), "spec.traffic[2].configurationName") == ["must not set the field(s)"]


def test_latest_revision_true_with_revision_name():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][0]["latestRevision"] = True
    assert at(check(svc), "spec.traffic[0].latestRevision") == [
        'may not set revisionName "hello-v1" when latestRevision is true']


def test_latest_revision_false_without_revision_name():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][2]["latestRevision"] = False
    assert at(check(svc), "spec.traffic[2].latestRevision") == [
        'may not set revisionName "" when latestRevision is false']


def test_url_not_allowed_in_spec_traffic():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["traffic"][0]["url"] = "http://current-hello.default.example.com"
    assert at(check(svc), "spec.traffic[0].url") == ["must not set the field(s)"]


def test_revision_name_in_traffic_must_be_qualified_name():
    route = clone(ROUTE)
    route["spec"]["traffic"][0]["revisionName"] = "bad name!"
    assert at(check(route), "spec.traffic[0].revisionName")[0].startswith('invalid key name "bad name!"')


# -- BYO revision names -----------------------------------------------------------------------------------

def test_byo_name_needs_parent_prefix():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["template"]["metadata"]["name"] = "other-v2"
    assert at(check(svc), "spec.template.metadata.name") == [
        'invalid value: "other-v2" must have prefix "hello-"']


def test_byo_name_must_be_dns1035():
    svc = clone(TRAFFIC_SPLIT)
    svc["spec"]["template"]["metadata"]["name"] = "hello-V2"
    assert "not a DNS 1035 label" in at(check(svc), "spec.template.metadata.name")[0]


def test_byo_name_not_allowed_with_parent_generate_name():
    cfg = clone(CONFIGURATION)
    cfg["metadata"] = {"generateName": "blue-green-demo-"}
    cfg["spec"]["template"]["metadata"] = {"name": "blue-green-demo-v1"}
    assert at(check(cfg), "spec.template.metadata.name") == ["must not set the field(s)"]


def test_template_change_without_name_change_rejected():
    old = default_object(kind_of(TRAFFIC_SPLIT), clone(TRAFFIC_SPLIT), Config())
    new = clone(TRAFFIC_SPLIT)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/knative/helloworld-go:v3"
    (msg,) = at(check(new, old), "spec.template.metadata.name")
    assert msg.startswith("Saw the following changes without a name change (-old +new)")
    assert '-"ghcr.io/knative/helloworld-go:latest" +"ghcr.io/knative/helloworld-go:v3"' in msg


def test_template_change_with_new_name_and_traffic_only_change_accepted():
    old = default_object(kind_of(TRAFFIC_SPLIT), clone(TRAFFIC_SPLIT), Config())
    renamed = clone(TRAFFIC_SPLIT)
    renamed["spec"]["template"]["metadata"]["name"] = "hello-v3"
    renamed["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/knative/helloworld-go:v3"
    assert check(renamed, old) == []
    shifted = clone(TRAFFIC_SPLIT)  # same template, undefaulted: not a change
    shifted["spec"]["traffic"][0]["percent"], shifted["spec"]["traffic"][1]["percent"] = 0, 100
    assert check(shifted, old) == []


def test_configuration_template_change_without_name_change_rejected():
    cfg = clone(CONFIGURATION)
    cfg["spec"]["template"]["metadata"] = {"name": "blue-green-demo-v1"}
    old = default_object(kind_of(cfg), cfg, Config())
    new = clone(cfg)
    new["spec"]["template"]["spec"]["containerConcurrency"] = 5
    assert at(check(new, old), "spec.template.metadata.name")


# -- Revision ---------------------------------------------------------------------------------------------

def test_revision_spec_is_immutable():
    old = clone(REVISION)
    new = clone(REVISION)
    new["spec"]["containers"][0]["image"] = "ghcr.io/knative/helloworld-go:v2"
    (msg,) = at(check(new, old), "spec")
    assert msg.startswith("Immutable fields changed (-old +new)")
    assert 'containers[0].image: -"ghcr.io/knative/helloworld-go:latest"' in msg


def test_revision_labels_and_annotations_may_change():
    old = clone(REVISION)
    new = clone(REVISION)
    new["metadata"]["labels"]["serving.knative.dev/routingState"] = "active"
    new["metadata"]["annotations"] = {"serving.knative.dev/routes": "hello"}
    assert check(new, old) == []


def test_autoscaling_annotation_errors_surface_from_template():
    svc = clone(HELLO)
    svc["spec"]["template"]["metadata"] = {"annotations": {"autoscaling.knative.dev/min-scale": "-1"}}
    errs = check(svc)
    assert errs and all("min-scale" in e.field for e in errs)
    assert all(e.field.startswith("spec.template.metadata.annotations") for e in errs)


# -- DomainMapping ----------------------------------------------------------------------------------------

def test_domain_mapping_name_must_be_a_domain():
    dm = clone(DOMAIN_MAPPING)
    dm["metadata"]["name"] = "hello"
    assert "at least two segments" in at(check(dm), "metadata.name")[0]


def test_domain_mapping_not_in_cluster_local_domain():
    dm = clone(DOMAIN_MAPPING)
    dm["metadata"]["name"] = "hello.default.svc.cluster.local"
    assert "must not be a subdomain of cluster local domain" in at(check(dm), "metadata.name")[0]


def test_domain_mapping_generate_name_rejected():
    dm = clone(DOMAIN_MAPPING)
    dm["metadata"] = {"generateName": "hello.", "namespace": "default"}
    assert at(check(dm), "metadata.generateName") == ["must not set the field(s)"]


def test_domain_mapping_ref_required_fields_and_namespace():
    dm = clone(DOMAIN_MAPPING)
    dm["spec"]["ref"] = {"name": "hello", "namespace": "other"}
    errs = check(dm)
    assert at(errs, "spec.ref.kind") == ["missing field(s)"]
    assert at(errs, "spec.ref.apiVersion") == ["missing field(s)"]
    assert "mismatched namespaces" in at(errs, "spec.ref.namespace")[0]
    del dm["spec"]["ref"]
    assert at(check(dm), "spec.ref") == ["missing field(s)"]


# -- robustness -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate", [
    lambda o: o.update(spec="nonsense"),
    lambda o: o["spec"].update(template=[1, 2]),
    lambda o: o["spec"]["template"].update(spec={"containers": "app"}),
    lambda o: o["spec"]["template"]["spec"].update(containers=[None, 3]),
    lambda o: o["spec"].update(traffic={"percent": 100}),
    lambda o: o["spec"].update(traffic=[None]),
    lambda o: o.update(metadata=["x"]),
    lambda o: o["metadata"].update(labels="app=x"),
])
def test_malformed_objects_report_errors_instead_of_crashing(mutate):
    svc = clone(HELLO)
    mutate(svc)
    kind = by_api_version("serving.knative.dev/v1", "Service")
    defaulted = default_object(kind, svc, Config())
    assert validate_object(kind, defaulted, None, Config()) != []
