"""Clusters follow the desired state: EDS for IPs, STRICT_DNS for names, article defaults."""

from __future__ import annotations

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.base_pb2 import RoutingPriority
from envoy.config.core.v3.config_source_pb2 import ApiVersion
from envoy.extensions.upstreams.http.v3.http_protocol_options_pb2 import HttpProtocolOptions

from control_plane.domain import (
    BackendSpec,
    CircuitBreaker,
    CircuitBreakers,
    DesiredState,
    Endpoint,
    HealthCheck,
    ModelSpec,
    OutlierDetection,
    Split,
    default_state,
)
from control_plane.translator import TranslatorOptions, translate
from control_plane.translator.clusters import HTTP_PROTOCOL_OPTIONS
from control_plane.translator.options import EXT_PROC_CLUSTER


def _state(**backends: BackendSpec) -> DesiredState:
    return DesiredState(
        backends=backends,
        models={name: ModelSpec(splits=[Split(backend=name, weight=1)]) for name in backends},
    )


def _clusters(state: DesiredState, options: TranslatorOptions | None = None) -> dict[str, Cluster]:
    return {c.name: c for c in translate(state, options or TranslatorOptions()).clusters}


def _protocol(cluster: Cluster) -> HttpProtocolOptions:
    opts = HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(opts)
    return opts


def test_one_cluster_per_backend_plus_ext_proc_sorted() -> None:
    resources = translate(default_state(), TranslatorOptions())
    assert [c.name for c in resources.clusters] == ["cosyvoice3", "espeak", EXT_PROC_CLUSTER]


def test_ip_backend_uses_eds_with_matching_assignment() -> None:
    resources = translate(default_state(Endpoint(host="127.0.0.1", port=9001)), TranslatorOptions())
    espeak = {c.name: c for c in resources.clusters}["espeak"]
    assert espeak.type == Cluster.EDS
    assert espeak.eds_cluster_config.eds_config.HasField("ads")
    assert espeak.eds_cluster_config.eds_config.resource_api_version == ApiVersion.V3
    assert not espeak.HasField("load_assignment")
    cla = {a.cluster_name: a for a in resources.endpoints}["espeak"]
    addr = cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("127.0.0.1", 9001)
    assert [a.cluster_name for a in resources.endpoints] == ["cosyvoice3", "espeak"]


def test_any_dns_name_makes_strict_dns_with_inline_assignment() -> None:
    backend = BackendSpec(
        endpoints=[Endpoint(host="10.0.0.1", port=80), Endpoint(host="tts-worker", port=8101)]
    )
    resources = translate(_state(mixed=backend), TranslatorOptions())
    cluster = {c.name: c for c in resources.clusters}["mixed"]
    assert cluster.type == Cluster.STRICT_DNS
    assert not cluster.HasField("eds_cluster_config")
    hosts = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in cluster.load_assignment.endpoints[0].lb_endpoints
    ]
    assert hosts == [("10.0.0.1", 80), ("tts-worker", 8101)]
    assert resources.endpoints == ()


def test_ipv6_literal_counts_as_ip() -> None:
    backend = BackendSpec(endpoints=[Endpoint(host="::1", port=80)])
    assert _clusters(_state(v6=backend))["v6"].type == Cluster.EDS


def test_article_defaults_circuit_breakers_health_check_outlier() -> None:
    # A backend with every default (the seeded ones check /ready instead of /health).
    cluster = _clusters(
        _state(cosyvoice3=BackendSpec(endpoints=[Endpoint(host="10.0.0.2", port=8102)]))
    )["cosyvoice3"]
    assert cluster.connect_timeout.seconds == 10
    assert cluster.lb_policy == Cluster.ROUND_ROBIN
    thresholds = {t.priority: t for t in cluster.circuit_breakers.thresholds}
    assert set(thresholds) == {RoutingPriority.DEFAULT, RoutingPriority.HIGH}
    for t in thresholds.values():
        assert t.max_pending_requests.value == 10
        assert t.max_requests.value == 20
        assert t.max_connections.value == 1024
        assert t.max_retries.value == 3
    (hc,) = cluster.health_checks
    assert hc.http_health_check.path == "/health"
    assert (hc.interval.seconds, hc.timeout.seconds) == (10, 5)
    assert (hc.unhealthy_threshold.value, hc.healthy_threshold.value) == (2, 2)
    od = cluster.outlier_detection
    assert od.consecutive_5xx.value == 5
    assert od.consecutive_gateway_failure.value == 5
    assert od.enforcing_consecutive_gateway_failure.value == 100
    assert od.base_ejection_time.seconds == 30
    assert od.max_ejection_percent.value == 50


def test_backends_speak_http1() -> None:
    opts = _protocol(_clusters(default_state())["espeak"])
    assert opts.explicit_http_config.HasField("http_protocol_options")


def test_per_priority_thresholds_and_overrides() -> None:
    backend = BackendSpec(
        endpoints=[Endpoint(host="127.0.0.1", port=80)],
        circuit_breakers=CircuitBreakers(
            default=CircuitBreaker(max_connections=5, max_pending_requests=1, max_requests=2),
            high=CircuitBreaker(max_connections=50, max_pending_requests=10, max_requests=20),
        ),
        health_check=HealthCheck(path="/ready", interval_s=0.5, timeout_s=0.25),
        connect_timeout_s=1.5,
    )
    cluster = _clusters(_state(b=backend))["b"]
    thresholds = {t.priority: t for t in cluster.circuit_breakers.thresholds}
    assert thresholds[RoutingPriority.DEFAULT].max_requests.value == 2
    assert thresholds[RoutingPriority.HIGH].max_requests.value == 20
    assert thresholds[RoutingPriority.HIGH].max_connections.value == 50
    assert cluster.health_checks[0].http_health_check.path == "/ready"
    assert cluster.health_checks[0].interval.ToMilliseconds() == 500
    assert cluster.health_checks[0].timeout.ToMilliseconds() == 250
    assert cluster.connect_timeout.ToMilliseconds() == 1500


def test_disabled_health_check_and_outlier_detection_are_omitted() -> None:
    backend = BackendSpec(
        endpoints=[Endpoint(host="127.0.0.1", port=80)],
        health_check=HealthCheck(enabled=False),
        outlier_detection=OutlierDetection(enabled=False),
    )
    cluster = _clusters(_state(b=backend))["b"]
    assert len(cluster.health_checks) == 0
    assert not cluster.HasField("outlier_detection")


def test_ext_proc_cluster_static_http2_for_ip() -> None:
    cluster = _clusters(default_state(), TranslatorOptions(ext_proc_port=19999))[EXT_PROC_CLUSTER]
    assert cluster.type == Cluster.STATIC
    addr = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("127.0.0.1", 19999)
    assert _protocol(cluster).explicit_http_config.HasField("http2_protocol_options")
    assert cluster.connect_timeout.ToMilliseconds() <= 1000


def test_ext_proc_cluster_strict_dns_for_name() -> None:
    options = TranslatorOptions(ext_proc_host="ext-proc")
    cluster = _clusters(default_state(), options)[EXT_PROC_CLUSTER]
    assert cluster.type == Cluster.STRICT_DNS
    assert cluster.dns_lookup_family == Cluster.V4_PREFERRED
