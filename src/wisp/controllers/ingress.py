"""Programs the routing table from Routes (main host, tag hosts) and DomainMappings (custom hosts)."""

from __future__ import annotations

from collections.abc import Sequence

from wisp.api import kinds
from wisp.api.meta import FALSE, TRUE, ConditionSet, set_condition
from wisp.controllers.base import ROUTE, SERVICE, Context, Key, Obj, working_copy, write_status
from wisp.controllers.traffic import Assigned
from wisp.dataplane.table import RoutingTable

DOMAIN_MAPPING = kinds.lookup("domainmappings")
DM_CONDITIONS = ConditionSet("Ready", ["DomainClaimed", "ReferenceResolved", "IngressReady",
                                       "CertificateProvisioned"])


class IngressProgrammer:
    """Turns resolved traffic into host entries of the routing table, and remembers what it set."""

    def __init__(self, ctx: Context, table: RoutingTable) -> None:
        self.ctx = ctx
        self.table = table
        self._route_hosts: dict[Key, set[str]] = {}
        self._route_split: dict[Key, tuple[list[tuple[str, int]], dict[str, str]]] = {}
        self._mapped: dict[str, Key] = {}  # custom host → route it serves

    def _main_split(self, ns: str, targets: Sequence[Assigned]) -> tuple[list[tuple[str, int]], dict[str, str]]:
        split = [(f"{ns}/{t.revision}", t.percent) for t in targets if t.percent > 0]
        tags = {t.tag: f"{ns}/{t.revision}" for t in targets if t.tag}
        return split, tags

    async def program(self, route: Obj, targets: Sequence[Assigned]) -> None:
        """Point the route's host (and each tag host) at its revisions; drop hosts no longer used."""
        ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
        split, tags = self._main_split(ns, targets)
        hosts = {self.ctx.urls.host(name, ns): (split, tags)}
        for tag, key in tags.items():
            hosts[self.ctx.urls.host(name, ns, tag)] = ([(key, 100)], {})
        for host, (host_split, host_tags) in hosts.items():
            self.table.set_host(host, host_split, tags=host_tags)
        for stale in self._route_hosts.get((ns, name), set()) - set(hosts):
            self.table.remove_host(stale)
        self._route_hosts[(ns, name)] = set(hosts)
        self._route_split[(ns, name)] = (split, tags)
        for custom, route_key in self._mapped.items():
            if route_key == (ns, name):
                self.table.set_host(custom, split, tags=tags)

    def unprogram(self, ns: str, name: str) -> None:
        for host in self._route_hosts.pop((ns, name), set()):
            self.table.remove_host(host)
        self._route_split.pop((ns, name), None)

    # ---- DomainMapping -----------------------------------------------------------------------

    def map_domain(self, host: str, route_key: Key) -> bool:
        """Serve `host` like the route; False when the route has no programmed traffic yet."""
        programmed = self._route_split.get(route_key)
        self._mapped[host] = route_key
        if programmed is None:
            return False
        self.table.set_host(host, programmed[0], tags=programmed[1])
        return True

    def unmap_domain(self, host: str) -> None:
        if self._mapped.pop(host, None) is not None:
            self.table.remove_host(host)

    def claimed_by(self, host: str) -> Key | None:
        return self._mapped.get(host)


def _claim_owner(ctx: Context, name: str, ns: str) -> str | None:
    """The namespace whose DomainMapping of this name was created first (it owns the domain)."""
    claims = [dm for dm in ctx.store.list(DOMAIN_MAPPING) if dm["metadata"]["name"] == name]
    claims.sort(key=lambda dm: (dm["metadata"].get("creationTimestamp", ""),
                                int(dm["metadata"].get("resourceVersion", 0))))
    return claims[0]["metadata"]["namespace"] if claims else None


async def reconcile_domain_mapping(ctx: Context, programmer: IngressProgrammer, key: Key) -> None:
    ns, name = key
    dm = ctx.store.find(DOMAIN_MAPPING, ns, name)
    if dm is None:
        if programmer.claimed_by(name) is not None and programmer.claimed_by(name)[0] == ns:  # type: ignore[index]
            programmer.unmap_domain(name)
        return
    now = ctx.now()
    updated = working_copy(dm)
    DM_CONDITIONS.initialize(updated, now)
    owner = _claim_owner(ctx, name, ns)
    status = updated.setdefault("status", {})
    if owner != ns:
        set_condition(updated, "DomainClaimed", FALSE, "DomainAlreadyClaimed",
                      f'The domain name is already in use by another namespace "{owner}".', now=now)
    else:
        set_condition(updated, "DomainClaimed", TRUE, now=now)
        ref = (dm.get("spec") or {}).get("ref") or {}
        target_kind = ROUTE if ref.get("kind") == "Route" else SERVICE
        target = ctx.store.find(target_kind, ref.get("namespace") or ns, ref.get("name", ""))
        if target is None or ref.get("kind") not in ("Service", "Route"):
            set_condition(updated, "ReferenceResolved", FALSE, "ResolveFailed",
                          f'{ref.get("kind", "Service")} "{ref.get("name", "")}" not found', now=now)
            programmer.unmap_domain(name)
        else:
            set_condition(updated, "ReferenceResolved", TRUE, now=now)
            serving = programmer.map_domain(name, (ns, ref["name"]))
            if serving:
                set_condition(updated, "IngressReady", TRUE, now=now)
            else:
                set_condition(updated, "IngressReady", "Unknown", "IngressNotConfigured",
                              "Waiting for the target to have traffic.", now=now)
        url = ctx.urls.url(name)
        status["url"] = url
        status["address"] = {"url": url}
    set_condition(updated, "CertificateProvisioned", TRUE, "TLSNotEnabled", "TLS is not enabled.", now=now)
    DM_CONDITIONS.recompute(updated, now)
    status["observedGeneration"] = dm["metadata"].get("generation", 1)
    write_status(ctx, DOMAIN_MAPPING, dm, updated)
