"""default_object: Knative's defaults, applied to a copy, idempotently, keeping unknown fields."""

from __future__ import annotations

import copy

import yaml

from wisp.api.kinds import by_api_version
from wisp.api.validation import default_object, validate_object
from wisp.config import Config

from .samples import CONFIGURATION, HELLO, REVISION, ROUTE, TRAFFIC_SPLIT, clone, container, kind_of

# A realistic manifest with fields wisp does not model (nodeSelector, securityContext,
# resources, x-extension keys, status) that must survive untouched.
RICH = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: rich
  namespace: default
  labels: {app: rich}
  annotations: {example.com/owner: team-a}
  x-custom-metadata: keep-me
spec:
  x-vendor-extension: {enabled: true, level: 3}
  template:
    metadata:
      labels: {app: rich}
      annotations:
        autoscaling.knative.dev/target: "50"
    spec:
      nodeSelector: {disktype: ssd}
      priorityClassName: high
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          imagePullPolicy: Always
          resources:
            limits: {cpu: "1", memory: 512Mi}
          securityContext:
            runAsNonRoot: true
            capabilities: {drop: [ALL]}
          ports:
            - containerPort: 8080
          someFutureField: [1, 2, {nested: true}]
status:
  observedGeneration: 3
  url: http://rich.default.example.com
""")


def defaulted(obj, config=None):
    return default_object(kind_of(obj), obj, config or Config())


def test_service_template_defaults():
    out = defaulted(clone(HELLO))
    spec = out["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] == 0
    assert spec["timeoutSeconds"] == 300
    assert spec["enableServiceLinks"] is False
    c = spec["containers"][0]
    assert c["name"] == "user-container"
    assert c["readinessProbe"] == {"tcpSocket": {"port": 0}, "successThreshold": 1}


def test_defaults_come_from_config():
    cfg = Config().with_overrides(defaults={"container-concurrency": 10, "revision-timeout-seconds": 120,
                                            "container-name-template": "app"})
    spec = defaulted(clone(HELLO), cfg)["spec"]["template"]["spec"]
    assert (spec["containerConcurrency"], spec["timeoutSeconds"]) == (10, 120)
    assert spec["containers"][0]["name"] == "app"


def test_user_values_win_over_defaults():
    svc = clone(HELLO)
    spec = svc["spec"]["template"]["spec"]
    spec.update(containerConcurrency=5, timeoutSeconds=30, enableServiceLinks=True)
    container(svc).update(name="web", readinessProbe={"httpGet": {"path": "/healthz"}, "periodSeconds": 3})
    out = defaulted(svc)["spec"]["template"]["spec"]
    assert (out["containerConcurrency"], out["timeoutSeconds"], out["enableServiceLinks"]) == (5, 30, True)
    assert out["containers"][0]["name"] == "web"
    assert out["containers"][0]["readinessProbe"] == {
        "httpGet": {"path": "/healthz"}, "periodSeconds": 3, "successThreshold": 1}


def test_zero_timeout_means_default():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["timeoutSeconds"] = 0
    assert defaulted(svc)["spec"]["template"]["spec"]["timeoutSeconds"] == 300


def test_multi_container_names_and_probe_only_on_serving_container():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containers"].append({"image": "busybox"})
    containers = defaulted(svc)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["user-container-0", "user-container-1"]
    assert "readinessProbe" in containers[0]
    assert "readinessProbe" not in containers[1]


def test_service_traffic_defaults_to_latest():
    assert defaulted(clone(HELLO))["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]


def test_traffic_targets_get_latest_revision_flag():
    traffic = defaulted(clone(TRAFFIC_SPLIT))["spec"]["traffic"]
    assert [t["latestRevision"] for t in traffic] == [False, False, True]


def test_standalone_route_traffic_not_invented():
    route = clone(ROUTE)
    route["spec"] = {}
    assert "traffic" not in defaulted(route)["spec"]


def test_service_owned_route_defaults_to_its_configuration():
    route = clone(ROUTE)
    route["spec"] = {}
    route["metadata"]["ownerReferences"] = [{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                             "name": "blue-green-demo", "uid": "u1", "controller": True}]
    out = defaulted(route)
    assert out["spec"]["traffic"] == [
        {"configurationName": "blue-green-demo", "latestRevision": True, "percent": 100}]
    assert validate_object(kind_of(route), out, None, Config()) == []


def test_configuration_and_revision_defaults():
    cfg = defaulted(clone(CONFIGURATION))
    assert cfg["spec"]["template"]["spec"]["containers"][0]["name"] == "user-container"
    rev = clone(REVISION)
    del rev["spec"]["timeoutSeconds"]
    assert defaulted(rev)["spec"]["timeoutSeconds"] == 300


def test_secret_mounts_forced_read_only_but_empty_dir_writable():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["volumes"] = [
        {"name": "creds", "secret": {"secretName": "creds"}}, {"name": "scratch", "emptyDir": {}}]
    container(svc)["volumeMounts"] = [{"name": "creds", "mountPath": "/creds"},
                                      {"name": "scratch", "mountPath": "/tmp/scratch"}]
    mounts = container(defaulted(svc))["volumeMounts"]
    assert mounts[0]["readOnly"] is True
    assert "readOnly" not in mounts[1]


def test_default_object_never_mutates_input_and_is_idempotent():
    original = clone(TRAFFIC_SPLIT)
    snapshot = copy.deepcopy(original)
    once = defaulted(original)
    assert original == snapshot
    assert defaulted(once) == once


def test_unknown_fields_survive_defaulting():
    out = defaulted(clone(RICH))
    expected = clone(RICH)
    # The only differences are the documented defaults.
    spec = expected["spec"]["template"]["spec"]
    spec.update(containerConcurrency=0, timeoutSeconds=300, enableServiceLinks=False)
    spec["containers"][0].update(name="user-container",
                                 readinessProbe={"tcpSocket": {"port": 0}, "successThreshold": 1})
    expected["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]
    assert out == expected
    assert validate_object(kind_of(RICH), out, None, Config()) == []


def test_status_untouched():
    out = defaulted(clone(RICH))
    assert out["status"] == RICH["status"]


def test_kinds_without_rules_are_copied_unchanged():
    broker = {"apiVersion": "eventing.knative.dev/v1beta3", "kind": "EventType",
              "metadata": {"name": "default"}, "spec": {"type": "dev.example.thing"}}
    kind = by_api_version("eventing.knative.dev/v1beta3", "EventType")
    out = default_object(kind, broker, Config())
    assert out == broker and out is not broker
    assert validate_object(kind, out, None, Config()) == []
    broker["metadata"]["name"] = "Default_Broker"
    assert validate_object(kind, broker, None, Config())[0].field == "metadata.name"
