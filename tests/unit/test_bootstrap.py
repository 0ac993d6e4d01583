"""Envoy's bootstrap: a static xDS cluster and admin, ADS for the rest, admin on loopback."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from gateway.bootstrap import XDS_CLUSTER, BootstrapOptions, render_bootstrap, run


def test_defaults() -> None:
    b = render_bootstrap(BootstrapOptions())
    assert b["node"] == {"id": "ttsgw-envoy-1", "cluster": "ttsgw"}
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    assert "listeners" not in b["static_resources"]
    assert "layered_runtime" not in b
    json.dumps(b)  # JSON-able


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
    render_bootstrap(BootstrapOptions(admin_address="::1"))


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
