"""The registry of resource kinds wisp serves: group, version, plural, scope."""

from __future__ import annotations

from dataclasses import dataclass

from wisp.api.errors import NotFound


@dataclass(frozen=True)
class Kind:
    """One served resource type, as Kubernetes discovery describes it."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> str:
        """The store's name for the type: `plural.group` (core: plural)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


SERVING = "serving.knative.dev"
EVENTING = "eventing.knative.dev"
MESSAGING = "messaging.knative.dev"
FLOWS = "flows.knative.dev"
SOURCES = "sources.knative.dev"

ALL: tuple[Kind, ...] = (
    Kind("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    Kind("", "v1", "Secret", "secrets", has_status=False),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",), has_status=False),
    Kind(SERVING, "v1", "Service", "services", short_names=("ksvc", "ksvcs", "kservice")),
    Kind(SERVING, "v1", "Configuration", "configurations", short_names=("config", "cfg")),
    Kind(SERVING, "v1", "Revision", "revisions", short_names=("rev",)),
    Kind(SERVING, "v1", "Route", "routes", short_names=("rt",)),
    Kind(SERVING, "v1beta1", "DomainMapping", "domainmappings", short_names=("dm",)),
    Kind(EVENTING, "v1", "Broker", "brokers"),
    Kind(EVENTING, "v1", "Trigger", "triggers"),
    Kind(EVENTING, "v1beta3", "EventType", "eventtypes"),
    Kind(MESSAGING, "v1", "Channel", "channels", short_names=("ch",)),
    Kind(MESSAGING, "v1", "InMemoryChannel", "inmemorychannels", short_names=("imc",)),
    Kind(MESSAGING, "v1", "Subscription", "subscriptions", short_names=("sub",)),
    Kind(FLOWS, "v1", "Sequence", "sequences"),
    Kind(FLOWS, "v1", "Parallel", "parallels"),
    Kind(SOURCES, "v1", "PingSource", "pingsources"),
    Kind(SOURCES, "v1", "ApiServerSource", "apiserversources"),
    Kind(SOURCES, "v1", "ContainerSource", "containersources"),
    Kind(SOURCES, "v1", "SinkBinding", "sinkbindings"),
)

_BY_GVP = {(k.group, k.version, k.plural): k for k in ALL}
_BY_AVK = {(k.api_version, k.kind): k for k in ALL}


def by_path(group: str, version: str, plural: str) -> Kind:
    """The kind served at `/apis/{group}/{version}/.../{plural}`."""
    try:
        return _BY_GVP[(group, version, plural)]
    except KeyError:
        gv = f"{group}/{version}" if group else version
        raise NotFound(f'the server could not find the requested resource "{plural}" in {gv}') from None


def by_api_version(api_version: str, kind: str) -> Kind:
    """The kind an object's `apiVersion` + `kind` names."""
    try:
        return _BY_AVK[(api_version, kind)]
    except KeyError:
        raise NotFound(f'no kind "{kind}" is registered for version "{api_version}"') from None


def lookup(name: str) -> Kind:
    """Resolve what a CLI user types: kind, plural, singular, short name, or `plural.group`."""
    wanted = name.lower()
    for k in ALL:
        if wanted in (k.plural, k.singular, k.key, k.kind.lower(), *k.short_names):
            return k
    # Serving wins for the ambiguous plain name "service(s)".
    raise NotFound(f'the server doesn\'t have a resource type "{name}"')


def group_versions() -> dict[str, list[str]]:
    """Every group with its served versions (core group under "")."""
    out: dict[str, list[str]] = {}
    for k in ALL:
        versions = out.setdefault(k.group, [])
        if k.version not in versions:
            versions.append(k.version)
    return out
