"""deploy/grafana: the dashboard parses, every panel queries something, provisioning agrees."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

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
