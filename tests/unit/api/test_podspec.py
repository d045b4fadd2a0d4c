"""RevisionSpec / container rules (`k8s_validation.go`), checked through a Service template."""

from __future__ import annotations

import pytest

from wisp.api.podspec import is_image_reference
from wisp.config import Config

from .samples import HELLO, REVISION, at, check, clone, container

SPEC = "spec.template.spec"
C0 = f"{SPEC}.containers[0]"


def svc_with(**container_fields):
    svc = clone(HELLO)
    container(svc).update(container_fields)
    return svc


def test_containers_required():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containers"] = []
    assert at(check(svc), f"{SPEC}.containers") == ["missing field(s)"]


def test_empty_container_is_missing():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containers"] = [{}]
    # Defaulting names it, so what is missing is what to run.
    assert at(check(svc), f"{C0}.image")[0].startswith("missing field(s)")


def test_command_without_image_is_a_local_process():
    svc = clone(HELLO)
    del container(svc)["image"]
    assert at(check(svc), f"{C0}.image")[0].startswith("missing field(s)")
    container(svc)["command"] = ["python", "-m", "http.server"]
    assert check(svc) == []


def test_bad_image_reference():
    (msg,) = at(check(svc_with(image="ghcr.io/Knative/Hello World")), f"{C0}.image")
    assert msg.startswith("Failed to parse image reference")


@pytest.mark.parametrize("image", [
    "nginx", "nginx:1.25", "localhost:5000/app", "ghcr.io/knative/helloworld-go:latest",
    "gcr.io/p/app@sha256:" + "a" * 64, "registry.example.com:443/team/app:v1.2-rc",
])
def test_valid_image_references(image):
    assert is_image_reference(image)


@pytest.mark.parametrize("image", ["UPPER/case", "app:", ":tag", "a b", "app@sha256:xyz"])
def test_invalid_image_references(image):
    assert not is_image_reference(image)


def test_two_containers_need_exactly_one_serving_port():
    svc = clone(HELLO)
    spec = svc["spec"]["template"]["spec"]
    spec["containers"].append({"name": "sidecar", "image": "busybox", "ports": [{"containerPort": 9000}]})
    assert at(check(svc), f"{SPEC}.containers[*].ports")[0].startswith("more than one container port is set")
    del spec["containers"][1]["ports"]
    del spec["containers"][0]["ports"]
    assert at(check(svc), f"{SPEC}.containers[*].ports")[0].startswith("missing field(s)")


def test_single_container_with_two_ports():
    svc = svc_with(ports=[{"containerPort": 8080}, {"containerPort": 8081}])
    assert at(check(svc), f"{SPEC}.containers[*].ports")


def test_duplicate_container_names():
    svc = clone(HELLO)
    spec = svc["spec"]["template"]["spec"]
    container(svc)["name"] = "app"
    spec["containers"].append({"name": "app", "image": "busybox"})
    assert at(check(svc), f"{SPEC}.containers[1].name") == ['duplicate container name "app"']


@pytest.mark.parametrize("name", ["", "h2c", "http1"])
def test_allowed_port_names(name):
    assert check(svc_with(ports=[{"name": name, "containerPort": 8080}])) == []


def test_port_name_not_allowed():
    (msg,) = at(check(svc_with(ports=[{"name": "grpc", "containerPort": 8080}])), f"{C0}.ports[0].name")
    assert msg.startswith("Port name grpc is not allowed")


@pytest.mark.parametrize("port", [8012, 8013, 8022, 9090, 9091, 8008])
def test_reserved_ports(port):
    (msg,) = at(check(svc_with(ports=[{"containerPort": port}])), f"{C0}.ports[0].containerPort")
    assert msg.startswith(f"invalid value: {port} is a reserved port")


def test_port_out_of_range_and_protocol():
    errs = check(svc_with(ports=[{"containerPort": 70000, "protocol": "UDP"}]))
    assert at(errs, f"{C0}.ports[0].containerPort") == ["expected 0 <= 70000 <= 65535"]
    assert at(errs, f"{C0}.ports[0].protocol") == ["invalid value: UDP"]


def test_queue_proxy_container_name_reserved():
    assert at(check(svc_with(name="queue-proxy")), f"{C0}.name") == [
        '"queue-proxy" is a reserved container name']


@pytest.mark.parametrize("name", ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"])
def test_reserved_env_names(name):
    svc = svc_with(env=[{"name": "TARGET", "value": "x"}, {"name": name, "value": "1"}])
    assert at(check(svc), f"{C0}.env[1].name") == [f'"{name}" is a reserved environment variable']


def test_sidecar_may_set_port_but_not_k_service():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containers"].append(
        {"name": "side", "image": "busybox", "env": [{"name": "PORT", "value": "9"},
                                                     {"name": "K_SERVICE", "value": "x"}]})
    errs = check(svc)
    assert at(errs, f"{SPEC}.containers[1].env[0].name") == []
    assert at(errs, f"{SPEC}.containers[1].env[1].name") == ['"K_SERVICE" is a reserved environment variable']


def test_env_needs_a_name():
    assert at(check(svc_with(env=[{"value": "x"}])), f"{C0}.env[0].name") == ["missing field(s)"]


def test_value_from_needs_exactly_one_source():
    ref = {"name": "s", "key": "k"}
    both = svc_with(env=[{"name": "A", "valueFrom": {"secretKeyRef": ref, "configMapKeyRef": ref}}])
    assert at(check(both), f"{C0}.env[0].valueFrom") == [
        "expected exactly one, got both: secretKeyRef, configMapKeyRef"]
    neither = svc_with(env=[{"name": "A", "valueFrom": {}}])
    assert at(check(neither), f"{C0}.env[0].valueFrom") == [
        "expected exactly one, got neither: secretKeyRef, configMapKeyRef"]
    no_key = svc_with(env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}])
    assert at(check(no_key), f"{C0}.env[0].valueFrom.secretKeyRef.key") == ["missing field(s)"]
    assert check(svc_with(env=[{"name": "A", "valueFrom": {"configMapKeyRef": ref}}])) == []


def test_field_ref_is_not_supported():
    svc = svc_with(env=[{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    assert at(check(svc), f"{C0}.env[0].valueFrom.fieldRef") == ["must not set the field(s)"]


def test_env_from_needs_exactly_one_ref():
    svc = svc_with(envFrom=[{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}, {}])
    errs = check(svc)
    assert at(errs, f"{C0}.envFrom[0]") == ["expected exactly one, got both: configMapRef, secretRef"]
    assert at(errs, f"{C0}.envFrom[1]") == ["expected exactly one, got neither: configMapRef, secretRef"]


def test_container_concurrency_bounds():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containerConcurrency"] = 1001
    assert at(check(svc), f"{SPEC}.containerConcurrency") == ["expected 0 <= 1001 <= 1000"]
    svc["spec"]["template"]["spec"]["containerConcurrency"] = 1000
    assert check(svc) == []


def test_container_concurrency_limit_comes_from_config():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["containerConcurrency"] = 0
    cfg = Config().with_overrides(defaults={"container-concurrency-max-limit": 50,
                                            "allow-container-concurrency-zero": False})
    assert at(check(svc, config=cfg), f"{SPEC}.containerConcurrency") == ["expected 1 <= 0 <= 50"]


def test_timeout_seconds_bounds():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["timeoutSeconds"] = 601
    assert at(check(svc), f"{SPEC}.timeoutSeconds") == ["expected 0 <= 601 <= 600"]
    cfg = Config().with_overrides(defaults={"max-revision-timeout-seconds": 900})
    assert check(svc, config=cfg) == []


def test_response_start_and_idle_timeouts_bounded_by_timeout():
    svc = clone(HELLO)
    spec = svc["spec"]["template"]["spec"]
    spec.update(timeoutSeconds=100, responseStartTimeoutSeconds=101, idleTimeoutSeconds=-1)
    errs = check(svc)
    assert at(errs, f"{SPEC}.responseStartTimeoutSeconds") == ["expected 0 <= 101 <= 100"]
    assert at(errs, f"{SPEC}.idleTimeoutSeconds") == ["expected 0 <= -1 <= 100"]


@pytest.mark.parametrize("hook", ["postStart", "preStop"])
def test_lifecycle_hooks_rejected(hook):
    svc = svc_with(lifecycle={hook: {"exec": {"command": ["true"]}}})
    assert at(check(svc), f"{C0}.lifecycle.{hook}") == ["must not set the field(s)"]


def test_probe_needs_exactly_one_handler():
    both = svc_with(livenessProbe={"httpGet": {"path": "/"}, "tcpSocket": {}})
    assert at(check(both), f"{C0}.livenessProbe") == ["expected exactly one, got both: httpGet, tcpSocket"]
    neither = svc_with(livenessProbe={"periodSeconds": 5})
    assert at(check(neither), f"{C0}.livenessProbe") == [
        "expected exactly one, got neither: httpGet, tcpSocket, exec, grpc"]


def test_probe_named_port_must_match_container_port():
    svc = svc_with(readinessProbe={"httpGet": {"path": "/", "port": "admin"}})
    assert at(check(svc), f"{C0}.readinessProbe.httpGet.port") == [
        "invalid value: admin (Probe port must match container port)"]
    assert check(svc_with(readinessProbe={"httpGet": {"path": "/", "port": "http"}})) == []


def test_readiness_probe_timing():
    svc = svc_with(readinessProbe={"tcpSocket": {}, "failureThreshold": 3})
    assert at(check(svc), f"{C0}.readinessProbe.failureThreshold") == [
        "failureThreshold is disallowed when periodSeconds is zero"]
    svc = svc_with(readinessProbe={"tcpSocket": {}, "periodSeconds": 5, "timeoutSeconds": 0})
    assert at(check(svc), f"{C0}.readinessProbe.timeoutSeconds") == ["expected 1 <= 0 <= 2147483647"]


def test_volume_mounts():
    svc = clone(HELLO)
    spec = svc["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "cfg", "configMap": {"name": "app-config"}},
                       {"name": "unused", "secret": {"secretName": "s"}}]
    container(svc)["volumeMounts"] = [{"name": "cfg", "mountPath": "/dev"},
                                      {"name": "cfg", "mountPath": "etc/app"},
                                      {"name": "nope", "mountPath": "/data"}]
    errs = check(svc)
    assert at(errs, f"{C0}.volumeMounts[0].mountPath") == ['mountPath "/dev" is a reserved path']
    assert at(errs, f"{C0}.volumeMounts[1].mountPath")[0].startswith("invalid value: etc/app")
    assert at(errs, f"{C0}.volumeMounts[2].name") == ["volumeMount has no matching volume"]
    assert at(errs, f"{SPEC}.volumes[1].name") == ['volume with name "unused" not mounted']


def test_volume_needs_one_source():
    svc = clone(HELLO)
    svc["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "hostPath": {"path": "/"}}]
    container(svc)["volumeMounts"] = [{"name": "v", "mountPath": "/v"}]
    assert at(check(svc), f"{SPEC}.volumes[0]")[0].startswith("expected exactly one, got neither: secret")


def test_revision_spec_checked_directly_on_revision():
    rev = clone(REVISION)
    rev["spec"]["containers"][0]["env"] = [{"name": "K_REVISION", "value": "x"}]
    assert at(check(rev), "spec.containers[0].env[0].name") == [
        '"K_REVISION" is a reserved environment variable']
