"""The data plane: the ingress router (HTTP reverse proxy), revision picking and endpoint pools."""

from wisp.dataplane.errors import AcquireTimeout, DataplaneError, QueueFull, RevisionGone
from wisp.dataplane.local import LocalRequest, LocalResponse
from wisp.dataplane.server import IngressServer
from wisp.dataplane.settings import RouterConfig
from wisp.dataplane.table import Endpoint, LocalHandler, RevisionMetrics, RevisionTarget, RoutingTable

__all__ = [
    "AcquireTimeout",
    "DataplaneError",
    "Endpoint",
    "IngressServer",
    "LocalHandler",
    "LocalRequest",
    "LocalResponse",
    "QueueFull",
    "RevisionGone",
    "RevisionMetrics",
    "RevisionTarget",
    "RouterConfig",
    "RoutingTable",
]
