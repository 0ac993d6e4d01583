"""Backend and ext_proc clusters, and the endpoint assignments EDS serves for IP-only backends.

Nothing here may depend on split weights: a canary step must be an RDS-only update so
clusters never re-warm and connections never churn.
"""

from __future__ import annotations

from envoy.config.cluster.v3.circuit_breaker_pb2 import CircuitBreakers
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.cluster.v3.outlier_detection_pb2 import OutlierDetection
from envoy.config.core.v3.base_pb2 import RequestMethod, RoutingPriority
from envoy.config.core.v3.health_check_pb2 import HealthCheck
from envoy.config.core.v3.protocol_pb2 import Http1ProtocolOptions, Http2ProtocolOptions
from envoy.config.endpoint.v3.endpoint_components_pb2 import (
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions
from google.protobuf.wrappers_pb2 import UInt32Value

from control_plane import domain
from control_plane.translator.options import (
    EXT_PROC_CLUSTER,
    ZIPKIN_CLUSTER,
    TracingOptions,
    TranslatorOptions,
)
from control_plane.translator.protos import ads, duration, is_ip_literal, packed, socket_address
from ttsgw_contract.limits import MAX_EXT_PROC_MESSAGE_BYTES

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# A filter on the same host or pod answers a SYN in microseconds; waiting longer only
# delays failure_mode_allow.
EXT_PROC_CONNECT_TIMEOUT_S = 0.25


def backend_cluster(name: str, backend: domain.BackendSpec) -> Cluster:
    cluster = Cluster(
        name=name,
        connect_timeout=duration(backend.connect_timeout_s),
        lb_policy=Cluster.ROUND_ROBIN,
        circuit_breakers=_circuit_breakers(backend.circuit_breakers),
    )
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
        packed(
            HttpProtocolOptions(
                explicit_http_config=HttpProtocolOptions.ExplicitHttpConfig(
                    http_protocol_options=Http1ProtocolOptions()
                )
            )
        )
    )
    if backend.health_check.enabled:
        cluster.health_checks.append(_health_check(backend.health_check))
    if backend.outlier_detection.enabled:
        cluster.outlier_detection.CopyFrom(_outlier_detection(backend.outlier_detection))
    if uses_eds(backend):
        cluster.type = Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads())
    else:
        # EDS carries addresses only; names (localhost, compose services) need Envoy's DNS.
        cluster.type = Cluster.STRICT_DNS
        cluster.dns_lookup_family = Cluster.V4_PREFERRED
        cluster.load_assignment.CopyFrom(load_assignment(name, backend))
    return cluster


def uses_eds(backend: domain.BackendSpec) -> bool:
    return all(is_ip_literal(e.host) for e in backend.endpoints)


def load_assignment(name: str, backend: domain.BackendSpec) -> ClusterLoadAssignment:
    return ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[
                    LbEndpoint(endpoint=Endpoint(address=socket_address(e.host, e.port)))
                    for e in backend.endpoints
                ]
            )
        ],
    )


def ext_proc_cluster(options: TranslatorOptions) -> Cluster:
    cluster = _single_host_cluster(
        EXT_PROC_CLUSTER, options.ext_proc_host, options.ext_proc_port, EXT_PROC_CONNECT_TIMEOUT_S
    )
    # Each buffered body crosses to the filter as one gRPC message; Envoy's 1 MiB default
    # would hold it back behind a write watermark. (HTTP/2's default stream window,
    # 256 MiB, is already above it.)
    cluster.per_connection_buffer_limit_bytes.value = MAX_EXT_PROC_MESSAGE_BYTES
    # gRPC needs HTTP/2 upstream; Envoy's default for a cluster is HTTP/1.1.
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
        packed(
            HttpProtocolOptions(
                explicit_http_config=HttpProtocolOptions.ExplicitHttpConfig(
                    http2_protocol_options=Http2ProtocolOptions()
                )
            )
        )
    )
    return cluster


def zipkin_cluster(options: TracingOptions) -> Cluster:
    """The span relay (or any Zipkin v2 collector) Envoy's tracer posts its spans to."""
    return _single_host_cluster(ZIPKIN_CLUSTER, options.collector_host, options.collector_port, 1.0)


def _single_host_cluster(name: str, host: str, port: int, connect_timeout_s: float) -> Cluster:
    """A cluster of one address: STATIC for an IP literal, else resolved by DNS."""
    cluster = Cluster(
        name=name,
        connect_timeout=duration(connect_timeout_s),
        lb_policy=Cluster.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=socket_address(host, port)))]
                )
            ],
        ),
    )
    if is_ip_literal(host):
        cluster.type = Cluster.STATIC
    else:
        cluster.type = Cluster.STRICT_DNS
        cluster.dns_lookup_family = Cluster.V4_PREFERRED
    return cluster


def _circuit_breakers(cb: domain.CircuitBreakers) -> CircuitBreakers:
    return CircuitBreakers(
        thresholds=[
            _thresholds(RoutingPriority.DEFAULT, cb.default),
            _thresholds(RoutingPriority.HIGH, cb.high),
        ]
    )


def _thresholds(priority: int, cb: domain.CircuitBreaker) -> CircuitBreakers.Thresholds:
    return CircuitBreakers.Thresholds(
        priority=priority,  # type: ignore[arg-type]
        max_connections=UInt32Value(value=cb.max_connections),
        max_pending_requests=UInt32Value(value=cb.max_pending_requests),
        max_requests=UInt32Value(value=cb.max_requests),
        max_retries=UInt32Value(value=cb.max_retries),
    )


def _health_check(hc: domain.HealthCheck) -> HealthCheck:
    return HealthCheck(
        timeout=duration(hc.timeout_s),
        interval=duration(hc.interval_s),
        unhealthy_threshold=UInt32Value(value=hc.unhealthy_threshold),
        healthy_threshold=UInt32Value(value=hc.healthy_threshold),
        http_health_check=HealthCheck.HttpHealthCheck(path=hc.path, method=RequestMethod.GET),
    )


def _outlier_detection(od: domain.OutlierDetection) -> OutlierDetection:
    return OutlierDetection(
        consecutive_5xx=UInt32Value(value=od.consecutive_5xx),
        consecutive_gateway_failure=UInt32Value(value=od.consecutive_gateway_failure),
        # Envoy counts gateway failures but ejects on them only when this is above 0.
        enforcing_consecutive_gateway_failure=UInt32Value(value=100),
        interval=duration(od.interval_s),
        base_ejection_time=duration(od.base_ejection_time_s),
        max_ejection_percent=UInt32Value(value=od.max_ejection_percent),
    )
