"""The typed bundle of Envoy resources that the translator produces and the xDS cache serves."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"

# Make before break (xds_protocol.rst): clusters, then endpoints, then listeners, then routes.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

SHORT_NAMES = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


@dataclass(frozen=True)
class Resources:
    """One complete set of Envoy resources for the fleet, as protobuf messages."""

    clusters: tuple[Cluster, ...] = ()
    endpoints: tuple[ClusterLoadAssignment, ...] = ()
    listeners: tuple[Listener, ...] = ()
    routes: tuple[RouteConfiguration, ...] = ()

    def by_type(self) -> dict[str, tuple[object, ...]]:
        return {
            CLUSTER: self.clusters,
            ENDPOINT: self.endpoints,
            LISTENER: self.listeners,
            ROUTE: self.routes,
        }
