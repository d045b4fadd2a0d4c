"""Namespace, Secret and ConfigMap; plus the label/annotation syntax every kind shares."""

from __future__ import annotations

import base64

import pytest
import yaml

from .samples import HELLO, at, check, clone

SECRET = yaml.safe_load("""
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
type: Opaque
data:
  username: YWRtaW4=
stringData:
  password: s3cr3t!
""")

CONFIG_MAP = yaml.safe_load("""
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  LOG_LEVEL: debug
  app.properties: |
    color=blue
binaryData:
  logo.png: iVBORw0KGgo=
""")


def test_samples_valid():
    assert check(clone(SECRET)) == []
    assert check(clone(CONFIG_MAP)) == []


def test_string_data_merged_into_base64_data():
    from wisp.api.kinds import by_api_version
    from wisp.api.validation import default_object
    from wisp.config import Config

    out = default_object(by_api_version("v1", "Secret"), clone(SECRET), Config())
    assert "stringData" not in out
    assert base64.b64decode(out["data"]["password"]) == b"s3cr3t!"
    assert out["data"]["username"] == "YWRtaW4="


def test_secret_data_must_be_base64():
    secret = clone(SECRET)
    secret["data"]["username"] = "admin!"
    (msg,) = at(check(secret), "data[username]")
    assert msg.startswith("invalid value: illegal base64 data")


def test_secret_keys_must_be_config_keys():
    secret = clone(SECRET)
    secret["stringData"] = {"bad key": "x", "..hidden": "y"}
    msgs = at(check(secret), "stringData")
    assert any(m.startswith('invalid key name "bad key"') for m in msgs)
    assert any("must not start with '..'" in m for m in msgs)


def test_malformed_string_data_is_reported_not_merged():
    secret = clone(SECRET)
    secret["stringData"] = {"port": 5432}
    assert at(check(secret), "stringData[port]") == ["invalid value: 5432 (expected a string)"]


def test_config_map_values_are_strings():
    cm = clone(CONFIG_MAP)
    cm["data"]["PORT"] = 8080
    assert at(check(cm), "data[PORT]") == ["invalid value: 8080 (expected a string)"]


def test_config_map_key_in_data_and_binary_data():
    cm = clone(CONFIG_MAP)
    cm["binaryData"]["LOG_LEVEL"] = "ZGVidWc="
    assert at(check(cm), "binaryData[LOG_LEVEL]") == ['duplicate of key "LOG_LEVEL" present in data']


def test_immutable_config_map_cannot_change():
    old = clone(CONFIG_MAP)
    old["immutable"] = True
    new = clone(old)
    new["data"]["LOG_LEVEL"] = "info"
    assert at(check(new, old), "data") == ["field is immutable when `immutable` is set"]


@pytest.mark.parametrize("name,ok", [("team-a", True), ("team.a", False), ("Team", False), ("a" * 64, False)])
def test_namespace_name_is_dns1123_label(name, ok):
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    assert (check(ns) == []) is ok


def test_label_keys_and_values():
    svc = clone(HELLO)
    svc["metadata"]["labels"] = {"app.kubernetes.io/name": "hello", "bad key": "x",
                                 "tier": "front end", "long": "v" * 64}
    errs = check(svc)
    assert at(errs, "metadata.labels")[0].startswith('invalid key name "bad key"')
    assert at(errs, "metadata.labels[tier]")[0].startswith("invalid value: front end")
    assert "must be no more than 63 characters" in at(errs, "metadata.labels[long]")[0]
    assert len(errs) == 3


def test_annotation_keys_and_values():
    svc = clone(HELLO)
    svc["metadata"]["annotations"] = {"Example.COM/Any-Case": "anything goes: here", "/nope": "x",
                                      "count": 3}
    errs = check(svc)
    assert at(errs, "metadata.annotations") == ['invalid key name "/nope": prefix part must be non-empty']
    assert at(errs, "metadata.annotations[count]") == ["invalid value: 3 (expected a string)"]


def test_template_labels_checked_too():
    svc = clone(HELLO)
    svc["spec"]["template"]["metadata"] = {"labels": {"ok": "not ok!"}}
    assert at(check(svc), "spec.template.metadata.labels[ok]")
