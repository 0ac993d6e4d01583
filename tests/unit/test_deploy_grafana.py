"""deploy/grafana: the dashboard parses, every query is valid PromQL over metrics our code declares.

The live check, against a running stack's scrapes and a real Prometheus, is in
tests/integration/test_promtool_metrics.py and tests/e2e/test_prometheus_scrape.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from control_plane.api.app import create_app
from control_plane.metrics.receiver import MetricsReceiver
from control_plane.metrics.window import FleetWindow
from control_plane.service import ControlPlane
from control_plane.state_metrics import control_plane_collector
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.metrics import XdsMetrics
from gateway.config_client import StaticConfigSource
from gateway.ext_proc.metrics import CacheMetrics, FilterMetrics
from tts_backends.metrics import WorkerMetrics
from ttsgw_common.cache.redis_store import RedisCacheStore

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset"}  # fmt: skip


def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "ttsgw.json").read_text()))


def expressions(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (labels, functions and ranges removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {n for n in names if n not in _NOT_METRICS}


def exposed_names(text: str) -> set[str]:
    """Every series name in an exposition, plus each declared family's series names.

    A labelled family nobody has observed yet (a NACK counter, a GPU gauge on CPU) has only
    its HELP and TYPE lines; it exists all the same, and a query on it is not a typo.
    """
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count")}  # fmt: skip
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            names.add(family)
            names.update(family + suffix for suffix in suffixes.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


async def declared_metrics() -> set[str]:
    """What every ttsgw component's code registers, built in-process (no stack needed)."""
    registry = CollectorRegistry()
    cp = ControlPlane(InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions())
    await cp.start()
    create_app(cp, admin_token="t", registry=registry)
    XdsMetrics(registry)
    MetricsReceiver(FleetWindow(), registry)
    registry.register(control_plane_collector(cp))
    source = StaticConfigSource()
    FilterMetrics(registry, source)
    CacheMetrics(registry)
    store = RedisCacheStore("redis://127.0.0.1:1", registry=registry)
    await store.aclose()
    text = generate_latest(registry).decode()
    text += generate_latest(WorkerMetrics("espeak").registry).decode()
    return exposed_names(text)


def test_metric_names_ignores_labels_functions_and_ranges() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, type) "
        '(rate(ttsgw_xds_convergence_seconds_bucket{type="cds"}[$__rate_interval]))) '
        "/ on (type) ttsgw_revision"
    )
    assert metric_names(expr) == {"ttsgw_xds_convergence_seconds_bucket", "ttsgw_revision"}


def test_every_panel_queries_at_least_one_metric() -> None:
    dash = dashboard()
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 15
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]), (panel["title"], target["expr"])


def test_dashboard_covers_the_issue_topics() -> None:
    names = set().union(*map(metric_names, expressions(dashboard())))
    assert {
        "envoy_cluster_upstream_rq_total",  # traffic per backend
        "envoy_cluster_upstream_rq_xx",  # errors per backend
        "envoy_cluster_upstream_rq_time_bucket",  # p50/p95/p99
        "ttsgw_cache_requests_total",  # traffic per model, cache hit ratio
        "ttsgw_xds_convergence_seconds_bucket",
        "ttsgw_xds_nacks_total",
        "ttsgw_xds_connected_streams",
        "ttsgw_revision",
    } <= names


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


async def test_every_ttsgw_metric_the_dashboard_queries_is_declared() -> None:
    wanted = set().union(*map(metric_names, expressions(dashboard())))
    ours = {n for n in wanted if not n.startswith("envoy_")}
    assert sorted(ours - await declared_metrics()) == []


def test_dashboard_covers_the_workers_canary_and_push_latency() -> None:
    names = set().union(*map(metric_names, expressions(dashboard())))
    assert {
        "ttsgw_filter_requests_total",  # per model and class
        "tts_worker_queue_depth",  # queue depth by priority
        "tts_worker_first_chunk_seconds_bucket",
        "tts_worker_shed_total",
        "ttsgw_route_weight",  # canary weight over time
        "ttsgw_rollout_state",
        "ttsgw_xds_push_latency_seconds_bucket",
        "ttsgw_xds_connected_envoys",
        "ttsgw_cache_redis_errors_total",
    } <= names


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule (Grafana's macros filled in)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make setup installs Debian's prometheus)")
    macros = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
    rules = []
    for i, expr in enumerate(expressions(dashboard())):
        for macro, value in macros.items():
            expr = expr.replace(macro, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
