"""The CLI's only way to the platform: the HTTP API, Kubernetes-style."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from wisp.api import kinds
from wisp.api.kinds import Kind

DEFAULT_API = "http://127.0.0.1:9477"


class CLIError(Exception):
    """Anything the CLI reports as one readable line and a non-zero exit."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NotFoundError(CLIError):
    pass


def api_base(explicit: str | None) -> str:
    base = explicit or os.environ.get("WISP_API") or DEFAULT_API
    if "://" not in base:
        base = "http://" + base
    return base.rstrip("/")


def resource_path(kind: Kind, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    root = f"/apis/{kind.group}/{kind.version}" if kind.group else "/api/v1"
    path = root
    if kind.namespaced and namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{kind.plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class Client:
    """A thin, synchronous wrapper over httpx that turns `Status` errors into CLIError."""

    def __init__(self, api: str | None = None, timeout: float = 30.0) -> None:
        self.base = api_base(api)
        self._http = httpx.Client(base_url=self.base, timeout=timeout,
                                  headers={"X-Wisp-User": _user(), "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.ConnectError:
            raise CLIError(f"cannot reach the wisp API at {self.base}: is `wisp serve` running? "
                           "(set WISP_API or --api)") from None
        except httpx.TimeoutException:
            raise CLIError(f"the wisp API at {self.base} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CLIError(f"talking to the wisp API at {self.base} failed: {exc}") from None
        if resp.status_code >= 400:
            raise _status_error(resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # ---- resources -------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.request("GET", resource_path(kind, namespace, name))
        return out

    def find(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, namespace, name)
        except NotFoundError:
            return None

    def list(self, kind: Kind, namespace: str | None, selector: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        body = self.request("GET", resource_path(kind, namespace), params=params)
        items: list[dict[str, Any]] = body.get("items", [])
        return items

    def create(self, kind: Kind, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", resource_path(kind, namespace), json=obj)
        return out

    def replace(self, kind: Kind, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request(
            "PUT", resource_path(kind, namespace, obj["metadata"]["name"]), json=obj)
        return out

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request(
            "PATCH", resource_path(kind, namespace, name), content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"})
        return out

    def delete(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.request("DELETE", resource_path(kind, namespace, name))
        return out

    def stream_text(self, path: str, params: dict[str, str]) -> Iterator[str]:
        """Yield text chunks of a streamed GET (logs) as they arrive."""
        try:
            with self._http.stream("GET", path, params=params, timeout=httpx.Timeout(10.0, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _status_error(resp)
                yield from resp.iter_text()
        except httpx.ConnectError:
            raise CLIError(f"cannot reach the wisp API at {self.base}: is `wisp serve` running?") from None

    def watch(self, kind: Kind, namespace: str, name: str | None = None,
              timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield watch events for a kind (optionally one object) until `timeout` passes."""
        params: dict[str, str] = {"watch": "true"}
        if timeout:
            params["timeoutSeconds"] = str(int(timeout) + 1)
        try:
            with self._http.stream("GET", resource_path(kind, namespace), params=params,
                                   timeout=httpx.Timeout(10.0, read=timeout)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _status_error(resp)
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj_name = (event.get("object") or {}).get("metadata", {}).get("name")
                    if name is None or obj_name == name or event.get("type") == "ERROR":
                        yield event
        except httpx.ReadTimeout:
            return
        except httpx.ConnectError:
            raise CLIError(f"cannot reach the wisp API at {self.base}: is `wisp serve` running?") from None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "anonymous"


def _status_error(resp: httpx.Response) -> CLIError:
    try:
        body = resp.json()
        message = body.get("message") or resp.text
    except ValueError:
        message = resp.text.strip() or resp.reason_phrase
    cls = NotFoundError if resp.status_code == 404 else CLIError
    return cls(f"{message}")


def kind_of(name: str) -> Kind:
    try:
        return kinds.lookup(name)
    except Exception:
        raise CLIError(f'unknown resource type "{name}"; try one of: '
                       + ", ".join(sorted(k.plural for k in kinds.ALL))) from None
