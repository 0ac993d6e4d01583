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
METRICS_SERVICE_CONFIG = "envoy.config.metrics.v3.MetricsServiceConfig"


def _segment_except(*words: str) -> str:
    """An RE2 pattern for one dot-free name segment other than `words` (all one length).

    RE2 has no lookahead, so "not external" is spelt out: any other length, or a first
    difference from every word at some position.
    """
    n = len(words[0])
    if any(len(w) != n for w in words):
        raise ValueError("words must share one length")
    alternatives = [f"[^.]{{1,{n - 1}}}", f"[^.]{{{n + 1},}}"]
    for prefix in sorted({w[:i] for w in words for i in range(n)}, key=lambda p: (len(p), p)):
        following = "".join(sorted({w[len(prefix)] for w in words if w.startswith(prefix)}))
        rest = n - len(prefix) - 1
        alternatives.append(f"{prefix}[^.{following}]" + (f"[^.]{{{rest}}}" if rest else ""))
    return "(?:" + "|".join(alternatives) + ")"


# What the control plane's analysis reads per cluster (request classes and upstream
# latency), plus upstream_rq_total that ops and tests read from /stats. Envoy repeats each
# under `cluster.<name>.external.` / `.internal.` (by request origin); those copies would
# double what every flush carries, so the last segment before the stat must be neither.
# (Backend names may contain dots: `cluster.tts.v1.2.upstream_rq_time` is kept.)
CLUSTER_STATS_REGEX = (
    r"^cluster\.(?:[^.]+\.)*"
    + _segment_except("external", "internal")
    + r"\.upstream_rq_([1-5]xx|total|time)$"
)
# The matcher also governs the admin /stats and /stats/prometheus, so Envoy's small,
# fixed-size families stay; only the per-cluster families, which grow with the fleet's
# backends, are cut.
KEPT_STAT_PREFIXES = ("server.", "listener_manager.", "cluster_manager.", "control_plane.", "http.")
# Envoy's default buckets jump 250 -> 500 -> 1000 -> 2500 ms, too coarse for a p99 gate on
# TTS latencies; these keep interpolation error within ~25% of the bucket anywhere in 1 ms-60 s.
LATENCY_BUCKETS_MS = (
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 750,
    1000, 1500, 2000, 3000, 4000, 5000, 7500, 10000, 15000, 20000, 30000, 60000, 300000,
)  # fmt: skip
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
    # Envoy streams its stats to the control plane (metrics_service sink on the xDS port)
    # every this many seconds; the control plane's rollout gates read them.
    stats_flush_interval_s: float = 2.0
    metrics_sink: bool = True
    # Set when the control plane turns Envoy's Zipkin tracer on: spans per report. Envoy's
    # default of 5 means one POST to the span relay every 5 spans, which costs the relay
    # far more than the spans do. None keeps Envoy's runtime defaults.
    zipkin_min_flush_spans: int | None = None


def render_bootstrap(opts: BootstrapOptions) -> dict[str, Any]:
    """The bootstrap as a JSON-able dict; raises ValueError for unsafe or malformed options."""
    _check(opts)
    bootstrap: dict[str, Any] = {
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
        "stats_config": _stats_config(),
    }
    if opts.metrics_sink:
        bootstrap["stats_flush_interval"] = _duration(opts.stats_flush_interval_s)
        bootstrap["stats_sinks"] = [_metrics_service_sink()]
    if opts.zipkin_min_flush_spans is not None:
        bootstrap["layered_runtime"] = {
            "layers": [
                {
                    "name": "ttsgw_tracing",
                    "static_layer": {
                        "tracing.zipkin.min_flush_spans": opts.zipkin_min_flush_spans,
                        # A report at least every second, however quiet the gateway.
                        "tracing.zipkin.flush_interval_ms": 1000,
                    },
                },
                {"name": "admin", "admin_layer": {}},
            ]
        }
    return bootstrap


def _stats_config() -> dict[str, Any]:
    patterns: list[dict[str, Any]] = [{"prefix": p} for p in KEPT_STAT_PREFIXES]
    patterns.append({"safe_regex": {"regex": CLUSTER_STATS_REGEX}})
    return {
        "stats_matcher": {"inclusion_list": {"patterns": patterns}},
        "histogram_bucket_settings": [
            {
                "match": {"safe_regex": {"regex": r"^cluster\..+\.upstream_rq_time$"}},
                "buckets": [float(b) for b in LATENCY_BUCKETS_MS],
            }
        ],
    }


def _metrics_service_sink() -> dict[str, Any]:
    return {
        "name": "envoy.stat_sinks.metrics_service",
        "typed_config": {
            "@type": "type.googleapis.com/" + METRICS_SERVICE_CONFIG,
            "transport_api_version": "V3",
            # The control plane serves MetricsService on the xDS port: no second cluster.
            "grpc_service": {"envoy_grpc": {"cluster_name": XDS_CLUSTER}},
            # Deltas make every flush one interval's traffic, like the histograms (which
            # Envoy always reports per interval), so the control plane just sums a window.
            "report_counters_as_deltas": True,
            # Buckets only: the control plane computes quantiles from merged buckets, and
            # Envoy's per-node summaries cannot be merged across a fleet.
            "histogram_emit_mode": "HISTOGRAM",
        },
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _check(opts: BootstrapOptions) -> None:
    if not opts.node_id:
        raise ValueError("node_id must not be empty: the control plane tells Envoys apart by it")
    for name, port in (("xds_port", opts.xds_port), ("admin_port", opts.admin_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{name} must be between 0 and 65535, got {port}")
    if not 0.1 <= opts.stats_flush_interval_s <= 300:
        raise ValueError(
            f"stats_flush_interval_s must be between 0.1 and 300, got {opts.stats_flush_interval_s}"
        )
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
        "stats_flush_interval_s": "TTSGW_STATS_FLUSH_INTERVAL_S",
    }
    changes: dict[str, Any] = {}
    for field, var in env.items():
        if var in environ:
            value = environ[var]
            if field.endswith("_port"):
                if not value.strip().isdigit():
                    raise ValueError(f"{var} must be a port number, got '{value}'")
                changes[field] = int(value)
            elif field == "stats_flush_interval_s":
                try:
                    changes[field] = float(value)
                except ValueError:
                    raise ValueError(f"{var} must be a number of seconds, got '{value}'") from None
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
    p.add_argument(
        "--stats-flush-interval",
        type=float,
        default=defaults.stats_flush_interval_s,
        metavar="SECONDS",
        help="how often Envoy streams its stats to the control plane",
    )
    p.add_argument(
        "--no-metrics-sink",
        dest="metrics_sink",
        action="store_false",
        help="do not stream stats to the control plane (e.g. Prometheus scrapes Envoy instead)",
    )
    p.add_argument(
        "--zipkin-min-flush-spans",
        type=int,
        default=defaults.zipkin_min_flush_spans,
        metavar="N",
        help="spans per Zipkin report when tracing is on (Envoy's default: 5)",
    )
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
        stats_flush_interval_s=args.stats_flush_interval,
        metrics_sink=args.metrics_sink,
        zipkin_min_flush_spans=args.zipkin_min_flush_spans,
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
