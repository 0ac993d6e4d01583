"""Envoy's bootstrap: a static xDS cluster and admin, ADS for the rest, admin on loopback."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from control_plane.bootstrap import XDS_CLUSTER, BootstrapOptions, render_bootstrap, run


def test_defaults() -> None:
    b = render_bootstrap(BootstrapOptions())
    assert b["node"] == {"id": "ttsgw-envoy-1", "cluster": "ttsgw"}
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    assert "listeners" not in b["static_resources"]
    assert "layered_runtime" not in b
    assert json.loads(json.dumps(b)) == b  # JSON-able, nothing lost on the way


def test_options_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        BootstrapOptions().node_id = "x"  # type: ignore[misc]


def test_xds_cluster_static_http2_keepalive() -> None:
    (cluster,) = render_bootstrap(BootstrapOptions(xds_port=18123))["static_resources"]["clusters"]
    assert cluster["name"] == XDS_CLUSTER == "ttsgw_xds"
    assert cluster["type"] == "STATIC"
    assert cluster["connect_timeout"] == "1s"
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert ep["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 18123,
    }
    (proto,) = cluster["typed_extension_protocol_options"].values()
    assert "http2_protocol_options" in proto["explicit_http_config"]
    assert cluster["upstream_connection_options"]["tcp_keepalive"]["keepalive_time"] > 0


def test_xds_cluster_strict_dns_for_a_name() -> None:
    b = render_bootstrap(BootstrapOptions(xds_host="control-plane"))
    (cluster,) = b["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    (ep,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert ep["endpoint"]["address"]["socket_address"]["address"] == "control-plane"


def test_dynamic_resources_over_ads() -> None:
    dyn = render_bootstrap(BootstrapOptions())["dynamic_resources"]
    ads = dyn["ads_config"]
    assert ads["api_type"] == "GRPC"
    assert ads["transport_api_version"] == "V3"
    assert ads["grpc_services"] == [{"envoy_grpc": {"cluster_name": "ttsgw_xds"}}]
    assert ads["set_node_on_first_message_only"] is True
    assert dyn["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    assert dyn["lds_config"] == {"ads": {}, "resource_api_version": "V3"}


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3", "::"])
def test_public_admin_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="allow_public_admin"):
        render_bootstrap(BootstrapOptions(admin_address=address))


def test_public_admin_allowed_on_purpose() -> None:
    b = render_bootstrap(BootstrapOptions(admin_address="0.0.0.0", allow_public_admin=True))
    assert b["admin"]["address"]["socket_address"]["address"] == "0.0.0.0"


def test_ipv6_loopback_admin_is_fine() -> None:
    b = render_bootstrap(BootstrapOptions(admin_address="::1"))
    assert b["admin"]["address"]["socket_address"] == {"address": "::1", "port_value": 9901}


@pytest.mark.parametrize(
    "opts",
    [
        BootstrapOptions(admin_address="localhost"),
        BootstrapOptions(xds_port=0),
        BootstrapOptions(xds_port=70000),
        BootstrapOptions(admin_port=-1),
        BootstrapOptions(node_id=""),
    ],
)
def test_malformed_options_are_refused(opts: BootstrapOptions) -> None:
    with pytest.raises(ValueError):
        render_bootstrap(opts)


def test_cli_prints_json_with_flags(capsys: pytest.CaptureFixture[str]) -> None:
    rc = run(
        ["--node-id", "edge-2", "--xds-host", "cp", "--xds-port", "18100", "--admin-port", "0"], {}
    )
    assert rc == 0
    b = json.loads(capsys.readouterr().out)
    assert b["node"]["id"] == "edge-2"
    sa = b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"
    ]["address"]["socket_address"]
    assert sa == {"address": "cp", "port_value": 18100}
    assert b["admin"]["address"]["socket_address"]["port_value"] == 0


def test_cli_env_overrides_and_flags_win(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"TTSGW_XDS_HOST": "10.0.0.5", "TTSGW_XDS_PORT": "19000", "TTSGW_NODE_ID": "from-env"}
    assert run(["--node-id", "from-flag"], env) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["node"]["id"] == "from-flag"
    sa = b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"
    ]["address"]["socket_address"]
    assert sa == {"address": "10.0.0.5", "port_value": 19000}


def test_cli_writes_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "envoy.json"
    assert run(["--output", str(out)], {}) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["node"]["id"] == "ttsgw-envoy-1"


def test_cli_refuses_public_admin_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--admin-address", "0.0.0.0"], {}) == 2
    assert "--allow-public-admin" in capsys.readouterr().err
    assert run(["--admin-address", "0.0.0.0", "--allow-public-admin"], {}) == 0


def test_cli_bad_env_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], {"TTSGW_XDS_PORT": "eighteen"}) == 2
    assert "TTSGW_XDS_PORT" in capsys.readouterr().err


def test_stats_stream_to_the_control_plane_over_the_xds_cluster() -> None:
    b = render_bootstrap(BootstrapOptions(stats_flush_interval_s=0.5))
    assert b["stats_flush_interval"] == "0.5s"
    (sink,) = b["stats_sinks"]
    assert sink["name"] == "envoy.stat_sinks.metrics_service"
    config = sink["typed_config"]
    assert config["@type"].endswith("envoy.config.metrics.v3.MetricsServiceConfig")
    assert config["grpc_service"] == {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    assert config["transport_api_version"] == "V3"
    assert config["report_counters_as_deltas"] is True
    assert config["histogram_emit_mode"] == "HISTOGRAM"


def test_no_metrics_sink_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--no-metrics-sink"], {}) == 0
    b = json.loads(capsys.readouterr().out)
    assert "stats_sinks" not in b and "stats_flush_interval" not in b
    assert "stats_matcher" in b["stats_config"]  # the admin /stats stays trimmed either way


def test_flush_interval_from_env_and_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], {"TTSGW_STATS_FLUSH_INTERVAL_S": "5"}) == 0
    assert json.loads(capsys.readouterr().out)["stats_flush_interval"] == "5s"
    assert run(["--stats-flush-interval", "1.25"], {"TTSGW_STATS_FLUSH_INTERVAL_S": "5"}) == 0
    assert json.loads(capsys.readouterr().out)["stats_flush_interval"] == "1.25s"
    assert run([], {"TTSGW_STATS_FLUSH_INTERVAL_S": "soon"}) == 2
    with pytest.raises(ValueError, match="stats_flush_interval_s"):
        render_bootstrap(BootstrapOptions(stats_flush_interval_s=0))


@pytest.mark.parametrize(
    ("stat", "kept"),
    [
        ("cluster.espeak.upstream_rq_5xx", True),
        ("cluster.espeak.upstream_rq_2xx", True),
        ("cluster.espeak.upstream_rq_total", True),
        ("cluster.espeak.upstream_rq_completed", False),
        ("cluster.espeak.external.upstream_rq_5xx", False),
        ("cluster.espeak.internal.upstream_rq_time", False),
        ("cluster.externally.upstream_rq_time", True),
        ("cluster.ttsgw_ext_proc.upstream_rq_total", True),
        ("cluster.espeak.upstream_rq_time", True),
        ("cluster.tts.v1.2.upstream_rq_time", True),
        ("cluster.espeak.upstream_cx_total", False),
        ("cluster.espeak.membership_healthy", False),
        ("cluster.espeak.upstream_rq_503", False),
        ("cluster.espeak.circuit_breakers.default.rq_open", False),
        ("listener_manager.lds.update_rejected", True),
        ("listener_manager.total_listeners_active", True),
        ("http.ttsgw.ext_proc.failure_mode_allowed", True),
        ("server.live", True),
        ("runtime.load_success", False),
    ],
)
def test_stats_matcher_keeps_the_analysis_and_what_ops_read(stat: str, kept: bool) -> None:
    import re

    patterns = render_bootstrap(BootstrapOptions())["stats_config"]["stats_matcher"][
        "inclusion_list"
    ]["patterns"]
    matched = any(
        stat.startswith(p["prefix"]) if "prefix" in p else re.match(p["safe_regex"]["regex"], stat)
        for p in patterns
    )
    assert bool(matched) is kept
