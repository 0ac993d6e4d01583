"""Views of the desired state's resources: models, backends, priority classes, write results."""

from __future__ import annotations

from typing import Any

from ttsgw.ops.table import format_fields, format_table
from ttsgw.ops.views.units import seconds


def splits_inline(splits: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['backend']}={s['weight']}" for s in splits)


def write_result(result: dict[str, Any], what: str, envoys: int | None = None) -> str:
    """One write's answer: the revision and, when waited, how long the fleet took to ACK.

    `envoys` is how many Envoys were connected; with none, `acked` is true at once and a
    convergence time would be meaningless.
    """
    if result.get("changed", True):
        line = f"revision {result['revision']}: {what}"
    else:
        line = f"no change: {what} leaves revision {result['revision']} as the head"
    if result.get("acked") is True:
        ms = result.get("converged_ms")
        if envoys == 0:
            line += "\nconverged: no Envoy is connected, so there was nothing to wait for"
        else:
            who = {None: "every connected Envoy", 1: "the one connected Envoy"}.get(
                envoys, f"all {envoys} connected Envoys"
            )
            took = "" if ms is None else f" in {ms:.1f} ms"
            line += f"\nconverged: {who} ACKed it{took}"
    elif result.get("acked") is False:
        line += "\nnot converged: some Envoy did not ACK it in time"
    return line


def models_table(data: dict[str, Any]) -> str:
    rows = [
        [
            m["name"],
            splits_inline(m["splits"]),
            seconds(m.get("timeout_s")),
            m.get("retry_policy", {}).get("num_retries"),
            seconds(m.get("cache_ttl_s")),
        ]
        for m in data["models"]
    ]
    if not rows:
        return f"no models (revision {data.get('revision')})"
    return format_table(["NAME", "SPLITS", "TIMEOUT", "RETRIES", "CACHE TTL"], rows)


def model_detail(model: dict[str, Any]) -> str:
    retry = model.get("retry_policy", {})
    fields: list[tuple[str, Any]] = [
        ("name", model["name"]),
        ("timeout", seconds(model.get("timeout_s"))),
        (
            "retries",
            f"{retry.get('num_retries')} on {retry.get('retry_on')}, "
            f"{seconds(retry.get('per_try_timeout_s'))} per try",
        ),
        ("cache ttl", seconds(model.get("cache_ttl_s"))),
    ]
    if model.get("sticky_header"):
        fields.append(
            ("sticky by", f"{model['sticky_header']} (one variant per value; random without it)")
        )
    head = format_fields(fields)
    total = sum(s["weight"] for s in model["splits"]) or 1
    rows = [
        [s["backend"], s["weight"], f"{100 * s['weight'] / total:.1f}%"] for s in model["splits"]
    ]
    return head + "\n\n" + format_table(["BACKEND", "WEIGHT", "SHARE"], rows)


def endpoints(backend: dict[str, Any]) -> str:
    return ", ".join(f"{e['host']}:{e['port']}" for e in backend.get("endpoints", []))


def _health(backend: dict[str, Any]) -> str:
    check = backend.get("health_check") or {}
    if not check.get("enabled", False):
        return "off"
    return f"GET {check.get('path')} every {seconds(check.get('interval_s'))}"


def backends_table(data: dict[str, Any]) -> str:
    rows = [[b["name"], b.get("kind"), endpoints(b), _health(b)] for b in data["backends"]]
    if not rows:
        return f"no backends (revision {data.get('revision')})"
    return format_table(["NAME", "KIND", "ENDPOINTS", "HEALTH CHECK"], rows)


def backend_detail(backend: dict[str, Any]) -> str:
    check = backend.get("health_check") or {}
    health = _health(backend)
    if check.get("enabled"):
        health += (
            f", timeout {seconds(check.get('timeout_s'))}, unhealthy after "
            f"{check.get('unhealthy_threshold')}, healthy after {check.get('healthy_threshold')}"
        )
    outlier = backend.get("outlier_detection") or {}
    ejection = "off"
    if outlier.get("enabled"):
        ejection = (
            f"after {outlier.get('consecutive_5xx')} 5xx or "
            f"{outlier.get('consecutive_gateway_failure')} gateway errors in a row, "
            f"for {seconds(outlier.get('base_ejection_time_s'))}, "
            f"at most {outlier.get('max_ejection_percent')}% of endpoints"
        )
    head = format_fields(
        [
            ("name", backend["name"]),
            ("kind", backend.get("kind")),
            ("endpoints", endpoints(backend)),
            ("health check", health),
            ("outlier ejection", ejection),
            ("connect timeout", seconds(backend.get("connect_timeout_s"))),
        ]
    )
    breakers = backend.get("circuit_breakers") or {}
    rows = [
        [
            priority,
            cb.get("max_connections"),
            cb.get("max_pending_requests"),
            cb.get("max_requests"),
            cb.get("max_retries"),
        ]
        for priority, cb in breakers.items()
    ]
    table = format_table(
        ["PRIORITY", "MAX CONNECTIONS", "MAX PENDING", "MAX REQUESTS", "MAX RETRIES"], rows
    )
    return f"{head}\n\ncircuit breakers:\n{table}"


def _fingerprints(keys: list[str]) -> str:
    if not keys:
        return "-"
    shown = ", ".join(keys[:3])
    return f"{shown} +{len(keys) - 3} more" if len(keys) > 3 else shown


def priority_classes_view(data: dict[str, Any]) -> str:
    rows = [
        [
            c["name"],
            c.get("level"),
            "unlimited" if c.get("rate_limit_rps") is None else f"{c['rate_limit_rps']:g}/s",
            len(c.get("keys") or []),
            _fingerprints(c.get("keys") or []),
        ]
        for c in data.get("priority_classes") or []
    ]
    required = "yes" if data.get("require_api_keys") else "no"
    table = (
        format_table(["NAME", "LEVEL", "RATE LIMIT", "KEYS", "FINGERPRINTS"], rows)
        if rows
        else "no priority classes"
    )
    return f"API keys required: {required}\n\n{table}"


def new_key_view(name: str, data: dict[str, Any]) -> str:
    return (
        f"new API key for priority class {name} "
        f"(fingerprint {data.get('fingerprint')}, revision {data.get('revision')}):\n\n"
        f"  {data.get('api_key')}\n\n"
        "This is the only time the key is shown: store it now. "
        "Only its hash is kept; revoke it by its fingerprint."
    )
