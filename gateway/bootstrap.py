"""Envoy's bootstrap: only the xDS server and the admin address are static; the rest comes over ADS.

`run(argv)` is the `ttsgw envoy-bootstrap` command; it prints (or writes) the JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Any

from control_plane.translator.protos import is_ip_literal

XDS_CLUSTER = "ttsgw_xds"
_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_ADS = {"ads": {}, "resource_api_version": "V3"}


@dataclass(frozen=True)
class BootstrapOptions:
    node_id: str = "ttsgw-envoy-1"
    node_cluster: str = "ttsgw"
    xds_host: str = "127.0.0.1"
    xds_port: int = 18000
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    # The admin port can quit Envoy, drain listeners and dump config: loopback unless
    # someone says otherwise on purpose.
    allow_public_admin: bool = False


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap as a JSON-able dict; raises ValueError for unsafe or malformed options."""
    _check(opts)
    return {
        "node": {"id": opts.node_id, "cluster": opts.node_cluster},
        "admin": {"address": _socket_address(opts.admin_address, opts.admin_port)},
        "static_resources": {"clusters": [_xds_cluster(opts)]},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                # The control plane keys state by the first message's node; resending it
                # on every ACK only costs bytes.
                "set_node_on_first_message_only": True,
            },
            "cds_config": dict(_ADS),
            "lds_config": dict(_ADS),
        },
    }


def _check(opts: BootstrapOptions) -> None:
    if not opts.node_id:
        raise ValueError("node_id must not be empty: the control plane tells Envoys apart by it")
    for name, port in (("xds_port", opts.xds_port), ("admin_port", opts.admin_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{name} must be between 0 and 65535, got {port}")
    if opts.xds_port == 0:
        raise ValueError("xds_port must name the control plane's port, not 0")
    try:
        admin = ipaddress.ip_address(opts.admin_address)
    except ValueError:
        raise ValueError(
            f"admin_address must be an IP address (Envoy binds it), got '{opts.admin_address}'"
        ) from None
    if not admin.is_loopback and not opts.allow_public_admin:
        raise ValueError(
            f"refusing admin_address {opts.admin_address}: Envoy's admin interface can stop "
            "the proxy and dump its config, so it stays on loopback (127.0.0.1) unless "
            "allow_public_admin (--allow-public-admin) is set"
        )


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _xds_cluster(opts: BootstrapOptions) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if is_ip_literal(opts.xds_host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket_address(opts.xds_host, opts.xds_port)}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            _HTTP_PROTOCOL_OPTIONS: {
                "@type": "type.googleapis.com/" + _HTTP_PROTOCOL_OPTIONS,
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # HTTP/2 PINGs notice a dead control plane on a silent ADS stream.
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        # A NAT or load balancer between Envoy and the control plane drops idle flows.
        "upstream_connection_options": {
            "tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 30, "keepalive_interval": 10}
        },
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster


def options_from_env(environ: dict[str, str] | os._Environ[str]) -> BootstrapOptions:
    """Defaults overridden by TTSGW_* variables; flags override these in turn."""
    opts = BootstrapOptions()
    env = {
        "node_id": "TTSGW_NODE_ID",
        "node_cluster": "TTSGW_NODE_CLUSTER",
        "xds_host": "TTSGW_XDS_HOST",
        "xds_port": "TTSGW_XDS_PORT",
        "admin_address": "TTSGW_ENVOY_ADMIN_ADDRESS",
        "admin_port": "TTSGW_ENVOY_ADMIN_PORT",
    }
    changes: dict[str, Any] = {}
    for field, var in env.items():
        if var in environ:
            value = environ[var]
            if field.endswith("_port"):
                if not value.strip().isdigit():
                    raise ValueError(f"{var} must be a port number, got '{value}'")
                changes[field] = int(value)
            else:
                changes[field] = value
    return replace(opts, **changes)


def _parser(defaults: BootstrapOptions) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ttsgw envoy-bootstrap", description=__doc__)
    p.add_argument("--node-id", default=defaults.node_id)
    p.add_argument("--node-cluster", default=defaults.node_cluster)
    p.add_argument("--xds-host", default=defaults.xds_host)
    p.add_argument("--xds-port", type=int, default=defaults.xds_port)
    p.add_argument("--admin-address", default=defaults.admin_address)
    p.add_argument("--admin-port", type=int, default=defaults.admin_port)
    p.add_argument("--allow-public-admin", action="store_true")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    return p


def run(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    try:
        defaults = options_from_env(os.environ if environ is None else environ)
    except ValueError as exc:
        print(f"ttsgw envoy-bootstrap: bad environment: {exc}", file=sys.stderr)
        return 2
    args = _parser(defaults).parse_args(argv)
    opts = BootstrapOptions(
        node_id=args.node_id,
        node_cluster=args.node_cluster,
        xds_host=args.xds_host,
        xds_port=args.xds_port,
        admin_address=args.admin_address,
        admin_port=args.admin_port,
        allow_public_admin=args.allow_public_admin,
    )
    try:
        text = json.dumps(render_bootstrap(opts), indent=2) + "\n"
    except ValueError as exc:
        print(f"ttsgw envoy-bootstrap: {exc}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run())
