"""Benchmark that shows why the xDS wire path encodes with xds-protos, not envoy-data-plane.

It builds the same N clusters and the same N-route RouteConfiguration with both libraries
(xds-protos: Envoy's generated protobufs on protobuf's C core; envoy-data-plane:
betterproto2, pure Python), times construction and serialization interleaved in one
process, and checks that both libraries put the same thing on the wire.

Run: .venv/bin/python benchmarks/encoding.py [--clusters N] [--routes N] [--repeat N]

It stands alone on purpose (no project imports), so it keeps measuring the libraries
even when the control plane's own resource builders change.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from typing import Any

import envoy_data_plane.envoy.config.cluster.v3 as bp_cluster
import envoy_data_plane.envoy.config.core.v3 as bp_core
import envoy_data_plane.envoy.config.endpoint.v3 as bp_endpoint
import envoy_data_plane.envoy.config.route.v3 as bp_route
import envoy_data_plane.envoy.type.matcher.v3 as bp_matcher
from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import (
    address_pb2,
    base_pb2,
    config_source_pb2,
    health_check_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.internal import api_implementation

PB = "xds-protos"
BP = "envoy-data-plane"


def _cluster_name(i: int) -> str:
    return f"tts-model-{i}"


def _endpoint_port(i: int) -> int:
    return 20000 + i % 40000


def _split(i: int) -> list[tuple[str, int]]:
    """Route i's canary split: (cluster, weight) pairs."""
    return [(_cluster_name(i), 90), (f"{_cluster_name(i)}-canary", 10)]


# Circuit breaker thresholds per priority: (max_connections, max_pending_requests,
# max_requests, max_retries).
_THRESHOLDS = {"DEFAULT": (1024, 256, 1024, 3), "HIGH": (2048, 512, 2048, 5)}


# --- xds-protos (protobuf C core) -------------------------------------------------------


def _pb_duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def _pb_u32(v: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=v)


def pb_cluster(i: int) -> cluster_pb2.Cluster:
    name = _cluster_name(i)
    eds = i % 2 == 0
    eds_config = (
        cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
            service_name=name,
        )
        if eds
        else None
    )
    address = address_pb2.SocketAddress(address="127.0.0.1", port_value=_endpoint_port(i))
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(socket_address=address)
        )
    )
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS if eds else cluster_pb2.Cluster.STATIC,
        eds_cluster_config=eds_config,
        connect_timeout=_pb_duration(1.0),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        circuit_breakers=circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    priority=base_pb2.RoutingPriority.Value(prio),
                    max_connections=_pb_u32(conns),
                    max_pending_requests=_pb_u32(pending),
                    max_requests=_pb_u32(reqs),
                    max_retries=_pb_u32(retries),
                )
                for prio, (conns, pending, reqs, retries) in _THRESHOLDS.items()
            ]
        ),
        health_checks=[
            health_check_pb2.HealthCheck(
                timeout=_pb_duration(5.0),
                interval=_pb_duration(10.0),
                unhealthy_threshold=_pb_u32(2),
                healthy_threshold=_pb_u32(2),
                http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(path="/health"),
            )
        ],
        outlier_detection=outlier_detection_pb2.OutlierDetection(
            consecutive_5xx=_pb_u32(5),
            interval=_pb_duration(10.0),
            base_ejection_time=_pb_duration(30.0),
            max_ejection_percent=_pb_u32(50),
        ),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def _pb_header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def pb_route(i: int) -> route_components_pb2.Route:
    model = f"model-{i}"
    return route_components_pb2.Route(
        name=f"route-{model}",
        match=route_components_pb2.RouteMatch(
            prefix="/v1/",
            headers=[
                route_components_pb2.HeaderMatcher(
                    name="x-tts-model", string_match=string_pb2.StringMatcher(exact=model)
                )
            ],
        ),
        route=route_components_pb2.RouteAction(
            weighted_clusters=route_components_pb2.WeightedCluster(
                clusters=[
                    route_components_pb2.WeightedCluster.ClusterWeight(
                        name=cluster,
                        weight=_pb_u32(weight),
                        response_headers_to_add=[_pb_header("x-tts-backend", cluster)],
                    )
                    for cluster, weight in _split(i)
                ]
            ),
            timeout=_pb_duration(30.0),
            retry_policy=route_components_pb2.RetryPolicy(
                retry_on="5xx,reset,connect-failure",
                num_retries=_pb_u32(2),
                per_try_timeout=_pb_duration(10.0),
            ),
        ),
    )


def pb_route_config(n: int) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name="ttsgw-routes",
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="ttsgw", domains=["*"], routes=[pb_route(i) for i in range(n)]
            )
        ],
    )


# --- envoy-data-plane (betterproto2, pure Python) ------------------------------------------


def bp_cluster_msg(i: int) -> bp_cluster.Cluster:
    name = _cluster_name(i)
    eds = i % 2 == 0
    eds_config = (
        bp_cluster.ClusterEdsClusterConfig(
            eds_config=bp_core.ConfigSource(
                ads=bp_core.AggregatedConfigSource(), resource_api_version=bp_core.ApiVersion.V3
            ),
            service_name=name,
        )
        if eds
        else None
    )
    address = bp_core.SocketAddress(address="127.0.0.1", port_value=_endpoint_port(i))
    endpoint = bp_endpoint.LbEndpoint(
        endpoint=bp_endpoint.Endpoint(address=bp_core.Address(socket_address=address))
    )
    return bp_cluster.Cluster(
        name=name,
        type=bp_cluster.ClusterDiscoveryType.EDS if eds else bp_cluster.ClusterDiscoveryType.STATIC,
        eds_cluster_config=eds_config,
        connect_timeout=timedelta(seconds=1),
        lb_policy=bp_cluster.ClusterLbPolicy.ROUND_ROBIN,
        circuit_breakers=bp_cluster.CircuitBreakers(
            thresholds=[
                bp_cluster.CircuitBreakersThresholds(
                    priority=bp_core.RoutingPriority[prio],
                    max_connections=conns,
                    max_pending_requests=pending,
                    max_requests=reqs,
                    max_retries=retries,
                )
                for prio, (conns, pending, reqs, retries) in _THRESHOLDS.items()
            ]
        ),
        health_checks=[
            bp_core.HealthCheck(
                timeout=timedelta(seconds=5),
                interval=timedelta(seconds=10),
                unhealthy_threshold=2,
                healthy_threshold=2,
                http_health_check=bp_core.HealthCheckHttpHealthCheck(path="/health"),
            )
        ],
        outlier_detection=bp_cluster.OutlierDetection(
            consecutive_5xx=5,
            interval=timedelta(seconds=10),
            base_ejection_time=timedelta(seconds=30),
            max_ejection_percent=50,
        ),
        load_assignment=bp_endpoint.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[bp_endpoint.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def _bp_header(key: str, value: str) -> bp_core.HeaderValueOption:
    return bp_core.HeaderValueOption(
        header=bp_core.HeaderValue(key=key, value=value),
        append_action=bp_core.HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def bp_route_msg(i: int) -> bp_route.Route:
    model = f"model-{i}"
    return bp_route.Route(
        name=f"route-{model}",
        match=bp_route.RouteMatch(
            prefix="/v1/",
            headers=[
                bp_route.HeaderMatcher(
                    name="x-tts-model", string_match=bp_matcher.StringMatcher(exact=model)
                )
            ],
        ),
        route=bp_route.RouteAction(
            weighted_clusters=bp_route.WeightedCluster(
                clusters=[
                    bp_route.WeightedClusterClusterWeight(
                        name=cluster,
                        weight=weight,
                        response_headers_to_add=[_bp_header("x-tts-backend", cluster)],
                    )
                    for cluster, weight in _split(i)
                ]
            ),
            timeout=timedelta(seconds=30),
            retry_policy=bp_route.RetryPolicy(
                retry_on="5xx,reset,connect-failure",
                num_retries=2,
                per_try_timeout=timedelta(seconds=10),
            ),
        ),
    )


def bp_route_config(n: int) -> bp_route.RouteConfiguration:
    return bp_route.RouteConfiguration(
        name="ttsgw-routes",
        virtual_hosts=[
            bp_route.VirtualHost(
                name="ttsgw", domains=["*"], routes=[bp_route_msg(i) for i in range(n)]
            )
        ],
    )


# --- measurement --------------------------------------------------------------------------


@dataclass
class Case:
    what: str
    library: str
    run: Callable[[], Any]
    samples: list[float]


def _time_once(fn: Callable[[], Any]) -> float:
    # Collect first so one library does not pay for the other's garbage.
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(pairs: list[tuple[Case, Case]], repeat: int) -> None:
    """Run each pair alternately, swapping the order every repetition.

    Interleaving means a noisy neighbour on a shared machine slows both libraries
    alike, so the ratio stays meaningful even when the absolute numbers wander.
    """
    for rep in range(repeat):
        for a, b in pairs:
            first, second = (a, b) if rep % 2 == 0 else (b, a)
            first.samples.append(_time_once(first.run))
            second.samples.append(_time_once(second.run))


def print_table(title: str, pairs: list[tuple[Case, Case]]) -> None:
    print(title)
    header = f"  {'what':<38} {'library':<17} {'median ms':>10} {'min ms':>10} {'ratio':>9}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for pb, bp in pairs:
        base = statistics.median(pb.samples)
        for case in (pb, bp):
            med = statistics.median(case.samples)
            ratio = med / base if base > 0 else float("inf")
            print(
                f"  {case.what:<38} {case.library:<17} {med * 1e3:>10.2f} "
                f"{min(case.samples) * 1e3:>10.2f} {ratio:>8.1f}x"
            )
    print("  (ratio = median / median of xds-protos for the same work)")
    print()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _decodes_equal(pb_msg: Any, bp_bytes: bytes) -> bool:
    """Parse betterproto2's bytes with the xds-protos class; compare with == and re-encoded.

    The deterministic re-encode also catches fields xds-protos would only keep as
    unknown fields, which == alone may not notice.
    """
    parsed = type(pb_msg).FromString(bp_bytes)
    return parsed == pb_msg and parsed.SerializeToString(
        deterministic=True
    ) == pb_msg.SerializeToString(deterministic=True)


def verify(
    pb_clusters: list[cluster_pb2.Cluster],
    bp_clusters: list[bp_cluster.Cluster],
    pb_rc: route_pb2.RouteConfiguration,
    bp_rc: bp_route.RouteConfiguration,
) -> None:
    """Print whether both libraries produce the same wire bytes and the same messages."""
    pb_cluster_bytes = [c.SerializeToString(deterministic=True) for c in pb_clusters]
    bp_cluster_bytes = [bytes(c) for c in bp_clusters]
    pb_rc_bytes = pb_rc.SerializeToString(deterministic=True)
    bp_rc_bytes = bytes(bp_rc)

    # Field order may legally differ between encoders (betterproto2 writes fields in
    # declaration order, protobuf in field-number order), so the check that matters is
    # the decoded one: parse envoy-data-plane's bytes with the xds-protos class, use ==.
    same_clusters = sum(p == b for p, b in zip(pb_cluster_bytes, bp_cluster_bytes, strict=True))
    same_len = sum(
        len(p) == len(b) for p, b in zip(pb_cluster_bytes, bp_cluster_bytes, strict=True)
    )
    equal_clusters = sum(
        _decodes_equal(p, b) for p, b in zip(pb_clusters, bp_cluster_bytes, strict=True)
    )
    rc_same = pb_rc_bytes == bp_rc_bytes
    rc_equal = _decodes_equal(pb_rc, bp_rc_bytes)

    def yn(ok: bool) -> str:
        return "yes" if ok else "NO"

    n = len(pb_clusters)
    print("Wire check (xds-protos bytes vs envoy-data-plane bytes)")
    print(f"  {'':<20} {'bytes':>9} {'same length':>12} {'byte-identical':>15} {'decoded ==':>11}")
    print(
        f"  {f'{n} clusters':<20} {sum(map(len, pb_cluster_bytes)):>9} "
        f"{f'{same_len}/{n}':>12} {f'{same_clusters}/{n}':>15} {f'{equal_clusters}/{n}':>11}"
    )
    print(
        f"  {'RouteConfiguration':<20} {len(pb_rc_bytes):>9} "
        f"{yn(len(pb_rc_bytes) == len(bp_rc_bytes)):>12} {yn(rc_same):>15} {yn(rc_equal):>11}"
    )
    print(
        "  decoded == : envoy-data-plane's bytes parsed with the xds-protos class compare\n"
        "  equal (==) to the xds-protos message and re-encode (deterministic) to its bytes.\n"
        "  Byte-identity is not expected: betterproto2 writes fields in declaration order,\n"
        "  protobuf in field-number order."
    )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000, help="clusters to build")
    parser.add_argument("--routes", type=int, default=1000, help="routes in the config")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions")
    args = parser.parse_args(argv)
    nc, nr, repeat = args.clusters, args.routes, max(1, args.repeat)

    print(
        f"Python {sys.version.split()[0]}; protobuf {_version('protobuf')} "
        f"({api_implementation.Type()} backend); xds-protos {_version('xds-protos')}; "
        f"envoy-data-plane {_version('envoy-data-plane')}; "
        f"betterproto2 {_version('betterproto2')}"
    )
    print(f"{nc} clusters, {nr}-route RouteConfiguration, {repeat} repetitions, interleaved")
    print()

    pb_clusters = [pb_cluster(i) for i in range(nc)]
    bp_clusters = [bp_cluster_msg(i) for i in range(nc)]
    pb_rc, bp_rc = pb_route_config(nr), bp_route_config(nr)
    verify(pb_clusters, bp_clusters, pb_rc, bp_rc)

    clusters_what, routes_what = f"{nc} clusters", f"RouteConfiguration {nr} routes"
    encode = [
        (
            Case(
                f"encode {clusters_what}",
                PB,
                lambda: [c.SerializeToString() for c in pb_clusters],
                [],
            ),
            Case(f"encode {clusters_what}", BP, lambda: [bytes(c) for c in bp_clusters], []),
        ),
        (
            Case(f"encode {routes_what}", PB, pb_rc.SerializeToString, []),
            Case(f"encode {routes_what}", BP, bp_rc.__bytes__, []),
        ),
    ]
    build = [
        (
            Case(f"build {clusters_what}", PB, lambda: [pb_cluster(i) for i in range(nc)], []),
            Case(f"build {clusters_what}", BP, lambda: [bp_cluster_msg(i) for i in range(nc)], []),
        ),
        (
            Case(f"build {routes_what}", PB, lambda: pb_route_config(nr), []),
            Case(f"build {routes_what}", BP, lambda: bp_route_config(nr), []),
        ),
    ]
    measure(encode + build, repeat)
    print_table("Encode (serialize to wire bytes)", encode)
    print_table("Construction (build the message objects)", build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
