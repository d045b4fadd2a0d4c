"""Host names and URLs of routes and tags, from config-network's templates (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from wisp.config import NetworkConfig


def _render(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{{." + key + "}}", value).replace("{{ ." + key + " }}", value)
    return out


@dataclass(frozen=True)
class URLMaker:
    """Knows the domain templates and the ingress port, and makes hosts and URLs from them."""

    network: NetworkConfig
    ingress_port: int = 8080

    def host(self, name: str, namespace: str, tag: str = "") -> str:
        route_name = _render(self.network.tag_template, {"Tag": tag, "Name": name}) if tag else name
        return _render(self.network.domain_template,
                       {"Name": route_name, "Namespace": namespace, "Domain": self.network.domain}).lower()

    def url(self, host: str) -> str:
        scheme = self.network.default_external_scheme
        port = "" if self.ingress_port == 80 else f":{self.ingress_port}"
        return f"{scheme}://{host}{port}"

    def route_url(self, name: str, namespace: str, tag: str = "") -> str:
        return self.url(self.host(name, namespace, tag))
