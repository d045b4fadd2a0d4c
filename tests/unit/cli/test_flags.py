"""kn-style flags become the right changes to a Service (pure)."""

from __future__ import annotations

import pytest

from wisp.cli.client import CLIError
from wisp.cli.flags import ServiceFlags, apply_flags, compute_traffic


def base() -> dict:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"template": {"spec": {"containers": [{"image": "a", "env": [{"name": "KEEP", "value": "1"},
                                                                               {"name": "DROP", "value": "2"}]}]}}}}


def test_env_set_and_remove() -> None:
    out = apply_flags(base(), ServiceFlags(env=["DROP-", "NEW=3", "KEEP=9"]), service_name="s")
    assert out["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "KEEP", "value": "9"}, {"name": "NEW", "value": "3"}]


def test_scale_and_concurrency_and_revision_name() -> None:
    out = apply_flags(base(), ServiceFlags(scale_min=1, scale_max=5, concurrency_limit=4,
                                           revision_name="{{.Service}}-v2"), service_name="s")
    tmpl = out["spec"]["template"]
    assert tmpl["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1",
                                               "autoscaling.knative.dev/max-scale": "5"}
    assert tmpl["spec"]["containerConcurrency"] == 4
    assert tmpl["metadata"]["name"] == "s-v2"


def test_input_is_not_mutated() -> None:
    original = base()
    apply_flags(original, ServiceFlags(image="b"), service_name="s")
    assert original == base()


@pytest.mark.parametrize("bad", [ServiceFlags(env=["novalue"]), ServiceFlags(env_from=["volume:x"]),
                                 ServiceFlags(port="http"), ServiceFlags(traffic=["x=lots"]),
                                 ServiceFlags(tags=["justtag"]), ServiceFlags(untag=["ghost"])])
def test_bad_flags_are_cli_errors(bad: ServiceFlags) -> None:
    with pytest.raises(CLIError):
        apply_flags(base(), bad, service_name="s")


def test_traffic_split_by_revision_and_latest() -> None:
    out = compute_traffic([], ServiceFlags(traffic=["s-00001=30", "@latest=70"]))
    assert out == [{"revisionName": "s-00001", "percent": 30}, {"latestRevision": True, "percent": 70}]


def test_tag_adds_zero_percent_target_and_traffic_by_tag() -> None:
    tagged = compute_traffic([{"latestRevision": True, "percent": 100}], ServiceFlags(tags=["s-00001=old"]))
    assert {"revisionName": "s-00001", "tag": "old", "percent": 0} in tagged
    moved = compute_traffic(tagged, ServiceFlags(traffic=["old=100"]))
    assert moved == [{"revisionName": "s-00001", "tag": "old", "percent": 100}]


def test_tagged_targets_survive_a_new_split_at_zero() -> None:
    existing = [{"latestRevision": True, "percent": 100}, {"revisionName": "s-1", "tag": "blue", "percent": 0}]
    out = compute_traffic(existing, ServiceFlags(traffic=["@latest=100"]))
    assert out == [{"latestRevision": True, "percent": 100}, {"revisionName": "s-1", "tag": "blue", "percent": 0}]


def test_untag_drops_zero_percent_target() -> None:
    existing = [{"latestRevision": True, "percent": 100}, {"revisionName": "s-1", "tag": "blue", "percent": 0}]
    assert compute_traffic(existing, ServiceFlags(untag=["blue"])) == [{"latestRevision": True, "percent": 100}]
