"""Serving e2e: DomainMapping routes a custom host to a service; a name is claimed by one namespace."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServingServer, condition, wait_until, write_app

pytestmark = pytest.mark.e2e
DOMAIN = "app.example.com"
DM_PATH = "/apis/serving.knative.dev/v1beta1/namespaces/{ns}/domainmappings/" + DOMAIN


def mapping(ns: str, service: str) -> dict[str, Any]:
    return {"apiVersion": "serving.knative.dev/v1beta1", "kind": "DomainMapping",
            "metadata": {"name": DOMAIN, "namespace": ns},
            "spec": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": service}}}


def get_mapping(server: ServingServer, ns: str) -> dict[str, Any]:
    resp = server.client.get(server.api + DM_PATH.format(ns=ns))
    return resp.json() if resp.status_code == 200 else {}


def test_domain_mapping_claims_routes_and_hands_over(serving_server: ServingServer, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app")
    serving_server.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    serving_server.cli("service", "create", "web", "--env", "BODY=default web", "--workdir", str(app),
                       "--", sys.executable, "app.py")
    serving_server.cli("service", "create", "web", "-n", "other", "--env", "BODY=other web",
                       "--workdir", str(app), "--", sys.executable, "app.py")

    serving_server.apply(mapping("default", "web"))
    first = wait_until(lambda: (dm := get_mapping(serving_server, "default"))
                       and condition(dm).get("status") == "True" and dm, what="first mapping Ready")
    assert first["status"]["url"].startswith(f"http://{DOMAIN}")
    assert serving_server.call(DOMAIN).text == "default web"
    assert serving_server.call(f"{DOMAIN}:80").text == "default web"  # the port is not part of the host

    serving_server.apply(mapping("other", "web"))
    second = wait_until(lambda: (dm := get_mapping(serving_server, "other"))
                        and condition(dm, "DomainClaimed").get("status") == "False" and dm,
                        what="second mapping refused")
    claimed = condition(second, "DomainClaimed")
    assert claimed["reason"] == "DomainAlreadyClaimed" and "default" in claimed["message"]
    assert condition(second)["status"] == "False"
    assert serving_server.call(DOMAIN).text == "default web"  # the owner keeps the domain

    resp = serving_server.client.delete(serving_server.api + DM_PATH.format(ns="default"))
    assert resp.status_code in (200, 202)
    wait_until(lambda: condition(get_mapping(serving_server, "other")).get("status") == "True",
               what="second mapping Ready after the first is deleted")
    wait_until(lambda: serving_server.call(DOMAIN).text == "other web", what="domain served by 'other'")


def test_unmapped_domain_is_not_served(serving_server: ServingServer) -> None:
    resp = serving_server.call("nobody.example.com")
    assert resp.status_code == 404
