"""Knative sample manifests (shapes taken from knative/docs) used across the api tests."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from wisp.api.errors import FieldError
from wisp.api.kinds import Kind, by_api_version
from wisp.api.validation import default_object, validate_object
from wisp.config import Config

HELLO = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - containerPort: 8080
          env:
            - name: TARGET
              value: "World"
""")

TRAFFIC_SPLIT = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    metadata:
      name: hello-v2
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          env:
            - name: TARGET
              value: "Knative v2"
  traffic:
    - tag: current
      revisionName: hello-v1
      percent: 50
    - tag: candidate
      revisionName: hello-v2
      percent: 50
    - tag: latest
      latestRevision: true
      percent: 0
""")

ROUTE = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Route
metadata:
  name: blue-green-demo
spec:
  traffic:
    - revisionName: blue-green-demo-00001
      percent: 100
    - configurationName: blue-green-demo
      latestRevision: true
      tag: v2
      percent: 0
""")

CONFIGURATION = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Configuration
metadata:
  name: blue-green-demo
spec:
  template:
    spec:
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
""")

REVISION = yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Revision
metadata:
  name: hello-00001
  labels:
    serving.knative.dev/configuration: hello
spec:
  containerConcurrency: 0
  timeoutSeconds: 300
  containers:
    - name: user-container
      image: ghcr.io/knative/helloworld-go:latest
      readinessProbe:
        successThreshold: 1
        tcpSocket:
          port: 0
""")

DOMAIN_MAPPING = yaml.safe_load("""
apiVersion: serving.knative.dev/v1beta1
kind: DomainMapping
metadata:
  name: hello.example.com
  namespace: default
spec:
  ref:
    name: hello
    kind: Service
    apiVersion: serving.knative.dev/v1
""")


def clone(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)


def kind_of(obj: dict[str, Any]) -> Kind:
    return by_api_version(obj["apiVersion"], obj["kind"])


def check(obj: dict[str, Any], old: dict[str, Any] | None = None,
          config: Config | None = None) -> list[FieldError]:
    """Default then validate, as the API server does on a write."""
    cfg = config or Config()
    kind = kind_of(obj)
    return validate_object(kind, default_object(kind, obj, cfg), old, cfg)


def at(errs: list[FieldError], field: str) -> list[str]:
    """The messages reported on exactly `field`."""
    return [e.message for e in errs if e.field == field]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return spec["containers"][0]
