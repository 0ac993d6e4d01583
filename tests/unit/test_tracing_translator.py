"""Envoy's Zipkin tracer from the control plane: off by default, 128-bit HTTP_PROTO when set."""

from __future__ import annotations

import pytest
from envoy.config.trace.v3.zipkin_pb2 import ZipkinConfig
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import (  # noqa: E501
    HttpConnectionManager,
)
from pydantic import ValidationError

from control_plane.bootstrap import BootstrapOptions, render_bootstrap
from control_plane.domain import default_state
from control_plane.settings import ControlPlaneSettings
from control_plane.translator import TracingOptions, TranslatorOptions, translate


def hcm(options: TranslatorOptions) -> HttpConnectionManager:
    (listener,) = translate(default_state(), options).listeners
    out = HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(out)
    return out


def test_tracing_is_off_without_a_collector() -> None:
    resources = translate(default_state(), TranslatorOptions())
    assert "ttsgw_zipkin" not in {c.name for c in resources.clusters}
    assert not hcm(TranslatorOptions()).HasField("tracing")


def test_zipkin_tracer_reports_every_request_to_the_relay() -> None:
    options = TranslatorOptions(
        tracing=TracingOptions(collector_host="10.0.0.7", collector_port=9500)
    )
    tracing = hcm(options).tracing
    assert tracing.random_sampling.value == 100.0
    assert tracing.spawn_upstream_span.value is True
    assert tracing.provider.name == "envoy.tracers.zipkin"
    zipkin = ZipkinConfig()
    assert tracing.provider.typed_config.Unpack(zipkin)
    assert zipkin.collector_cluster == "ttsgw_zipkin"
    assert zipkin.collector_endpoint == "/api/v2/spans"
    assert zipkin.collector_endpoint_version == ZipkinConfig.HTTP_PROTO
    assert zipkin.trace_id_128bit is True
    assert zipkin.shared_span_context.value is False
    assert {t.tag for t in tracing.custom_tags} >= {"request_id", "tts.model"}
    (cluster,) = [
        c for c in translate(default_state(), options).clusters if c.name == "ttsgw_zipkin"
    ]
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (address.socket_address.address, address.socket_address.port_value) == (
        "10.0.0.7",
        9500,
    )


def test_control_plane_setting_is_host_port(tmp_path: object) -> None:
    settings = ControlPlaneSettings(zipkin_collector="relay:9412", route_secret="s")
    assert settings.translator_options().tracing == TracingOptions("relay", 9412)
    assert ControlPlaneSettings(route_secret="s").translator_options().tracing is None
    with pytest.raises(ValidationError):
        ControlPlaneSettings(zipkin_collector="no-port")


def test_bootstrap_sets_zipkin_flush_only_when_asked() -> None:
    assert "layered_runtime" not in render_bootstrap(BootstrapOptions())
    runtime = render_bootstrap(BootstrapOptions(zipkin_min_flush_spans=100))["layered_runtime"]
    assert runtime["layers"][0]["static_layer"]["tracing.zipkin.min_flush_spans"] == 100
