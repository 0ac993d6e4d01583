"""Small hand-built Envoy resources for tests and demos of the xDS server (not the translator)."""

from __future__ import annotations

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.config.core.v3.config_source_pb2 import V3, AggregatedConfigSource, ConfigSource
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import (
    Route,
    RouteAction,
    RouteMatch,
    VirtualHost,
    WeightedCluster,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.http.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
    HttpFilter,
    Rds,
)
from google.protobuf.any_pb2 import Any
from google.protobuf.duration_pb2 import Duration
from google.protobuf.wrappers_pb2 import UInt32Value

from control_plane.xds.resources import Resources

_ADS = ConfigSource(ads=AggregatedConfigSource(), resource_api_version=V3)


def _address(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def eds_cluster(name: str) -> Cluster:
    cluster = Cluster(name=name, type=Cluster.EDS, connect_timeout=Duration(seconds=1))
    cluster.eds_cluster_config.eds_config.CopyFrom(_ADS)
    return cluster


def static_cluster(name: str, host: str = "127.0.0.1", port: int = 8080) -> Cluster:
    cluster = Cluster(name=name, type=Cluster.STATIC, connect_timeout=Duration(seconds=1))
    cluster.load_assignment.CopyFrom(assignment(name, host, port))
    return cluster


def assignment(
    cluster_name: str, host: str = "127.0.0.1", port: int = 8080
) -> ClusterLoadAssignment:
    endpoint = LbEndpoint(endpoint=Endpoint(address=_address(host, port)))
    return ClusterLoadAssignment(
        cluster_name=cluster_name, endpoints=[LocalityLbEndpoints(lb_endpoints=[endpoint])]
    )


def route_config(name: str, weights: dict[str, int]) -> RouteConfiguration:
    """One catch-all route splitting traffic over `weights` (cluster name -> weight)."""
    if len(weights) == 1:
        action = RouteAction(cluster=next(iter(weights)))
    else:
        action = RouteAction(
            weighted_clusters=WeightedCluster(
                clusters=[
                    WeightedCluster.ClusterWeight(name=c, weight=UInt32Value(value=w))
                    for c, w in weights.items()
                ]
            )
        )
    route = Route(match=RouteMatch(prefix="/"), route=action)
    vhost = VirtualHost(name="all", domains=["*"], routes=[route])
    return RouteConfiguration(name=name, virtual_hosts=[vhost])


def listener(name: str, route_config_name: str, port: int, host: str = "127.0.0.1") -> Listener:
    hcm = HttpConnectionManager(
        stat_prefix=name,
        rds=Rds(route_config_name=route_config_name, config_source=_ADS),
        http_filters=[HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router()))],
    )
    hcm_filter = Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm)
    )
    chain = FilterChain(filters=[hcm_filter])
    return Listener(name=name, address=_address(host, port), filter_chains=[chain])


def _pack(message: object) -> Any:
    packed = Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def canary(weights: dict[str, int], *, listener_port: int = 10000) -> Resources:
    """EDS clusters named after `weights`, their endpoints, one listener and one split route."""
    return Resources(
        clusters=tuple(eds_cluster(c) for c in sorted(weights)),
        endpoints=tuple(assignment(c, port=8100 + i) for i, c in enumerate(sorted(weights))),
        listeners=(listener("ingress", "routes", listener_port),),
        routes=(route_config("routes", weights),),
    )
