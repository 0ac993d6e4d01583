"""The ops CLI's human output: the table formatter and each view, on the API's real shapes."""

from __future__ import annotations

from typing import Any

import pytest

from ttsgw.ops.table import format_fields, format_table
from ttsgw.ops.views import config, live, revisions
from ttsgw.ops.views.units import age

ESPEAK_MODEL: dict[str, Any] = {
    "name": "espeak",
    "splits": [{"backend": "espeak", "weight": 90}, {"backend": "espeak-v2", "weight": 30}],
    "timeout_s": 60.0,
    "retry_policy": {
        "retry_on": "gateway-error,connect-failure",
        "num_retries": 3,
        "per_try_timeout_s": 30.0,
    },
    "cache_ttl_s": 3600,
}
BREAKER = {
    "max_connections": 1024,
    "max_pending_requests": 10,
    "max_requests": 20,
    "max_retries": 3,
}
ESPEAK_BACKEND: dict[str, Any] = {
    "name": "espeak",
    "kind": "espeak",
    "endpoints": [{"host": "127.0.0.1", "port": 8101}, {"host": "10.0.0.2", "port": 8101}],
    "health_check": {
        "enabled": True,
        "path": "/ready",
        "interval_s": 10.0,
        "timeout_s": 5.0,
        "unhealthy_threshold": 2,
        "healthy_threshold": 3,
    },
    "circuit_breakers": {"default": BREAKER, "high": {**BREAKER, "max_requests": 40}},
    "outlier_detection": {"enabled": False},
    "connect_timeout_s": 2.5,
}
HEAD = {"cds": "c" * 16, "eds": "e" * 16, "lds": "1" * 16, "rds": "2" * 16}


def test_table_aligns_columns_and_trims_trailing_space() -> None:
    text = format_table(["A", "LONGER"], [["xyz", None], [1, True]])
    assert text == "A    LONGER\nxyz  -\n1    yes"
    with pytest.raises(ValueError, match="expected 2"):
        format_table(["A", "B"], [["only one"]])
    assert format_fields([("a", 1), ("long key", "v\nw")]) == "a:        1\nlong key: v w"


def test_models_table_and_detail() -> None:
    data = {"revision": 3, "models": [ESPEAK_MODEL]}
    assert config.models_table(data) == (
        "NAME    SPLITS                   TIMEOUT  RETRIES  CACHE TTL\n"
        "espeak  espeak=90, espeak-v2=30  60s      3        3600s"
    )
    assert config.models_table({"revision": 7, "models": []}) == "no models (revision 7)"
    assert config.model_detail(ESPEAK_MODEL) == (
        "name:      espeak\n"
        "timeout:   60s\n"
        "retries:   3 on gateway-error,connect-failure, 30s per try\n"
        "cache ttl: 3600s\n"
        "\n"
        "BACKEND    WEIGHT  SHARE\n"
        "espeak     90      75.0%\n"
        "espeak-v2  30      25.0%"
    )


def test_backends_table_and_detail() -> None:
    assert config.backends_table({"revision": 1, "backends": [ESPEAK_BACKEND]}) == (
        "NAME    KIND    ENDPOINTS                      HEALTH CHECK\n"
        "espeak  espeak  127.0.0.1:8101, 10.0.0.2:8101  GET /ready every 10s"
    )
    assert config.backend_detail(ESPEAK_BACKEND) == (
        "name:             espeak\n"
        "kind:             espeak\n"
        "endpoints:        127.0.0.1:8101, 10.0.0.2:8101\n"
        "health check:     GET /ready every 10s, timeout 5s, unhealthy after 2, healthy after 3\n"
        "outlier ejection: off\n"
        "connect timeout:  2.5s\n"
        "\n"
        "circuit breakers:\n"
        "PRIORITY  MAX CONNECTIONS  MAX PENDING  MAX REQUESTS  MAX RETRIES\n"
        "default   1024             10           20            3\n"
        "high      1024             10           40            3"
    )


def test_write_results() -> None:
    waited = {"revision": 5, "changed": True, "acked": True, "converged_ms": 14.13}
    assert config.write_result(waited, "set splits of espeak (espeak=100)") == (
        "revision 5: set splits of espeak (espeak=100)\n"
        "converged: every connected Envoy ACKed it in 14.1 ms"
    )
    assert config.write_result(waited, "x", envoys=1).endswith(
        "the one connected Envoy ACKed it in 14.1 ms"
    )
    assert config.write_result(waited, "x", envoys=0).endswith(
        "no Envoy is connected, so there was nothing to wait for"
    )
    noop = {"revision": 5, "changed": False, "snapshot_version": "x"}
    assert config.write_result(noop, "restore revision 5") == (
        "no change: restore revision 5 leaves revision 5 as the head"
    )
    late = {"revision": 6, "changed": True, "acked": False, "converged_ms": None}
    assert "not converged" in config.write_result(late, "x")


def test_revisions_list_marks_the_head_and_shows_utc() -> None:
    data = {
        "head": 3,
        "revisions": [
            {
                "revision": 3,
                "created_at": "2026-11-21T12:03:02.170+02:00",
                "author": "alice",
                "message": "set splits of espeak: espeak=90, espeak-v2=10",
            },
            {
                "revision": 1,
                "created_at": "2026-11-21T10:01:56.803+00:00",
                "author": "ttsgw",
                "message": "initial state",
            },
        ],
    }
    assert revisions.revisions_table(data) == (
        "REV  CREATED (UTC)        AUTHOR  MESSAGE\n"
        "3 *  2026-11-21 10:03:02  alice   set splits of espeak: espeak=90, espeak-v2=10\n"
        "1    2026-11-21 10:01:56  ttsgw   initial state\n"
        "\n"
        "* head revision 3"
    )


def test_revision_diff_reads_like_a_patch() -> None:
    data = {
        "from": 2,
        "to": 3,
        "changes": [
            {"path": "models.espeak.splits.0.weight", "op": "changed", "old": 100, "new": 90},
            {"path": "models.espeak.splits.1.backend", "op": "added", "old": None, "new": "v2"},
            {"path": "backends.old", "op": "removed", "old": {"kind": "espeak"}, "new": None},
        ],
    }
    assert revisions.revision_diff(data) == (
        "revision 2 -> 3: 3 changes\n"
        "~ models.espeak.splits.0.weight: 100 -> 90\n"
        '+ models.espeak.splits.1.backend: "v2"\n'
        '- backends.old: {"kind": "espeak"}'
    )
    assert revisions.revision_diff({"from": 1, "to": 4, "changes": []}) == (
        "revision 1 -> 4: no changes"
    )


def test_revision_detail_summarises_the_state() -> None:
    data = {
        "revision": 1,
        "created_at": "2026-11-21T10:01:56.803+00:00",
        "author": "ttsgw",
        "message": "initial state",
        "state": {
            "backends": {"espeak": ESPEAK_BACKEND},
            "models": {"espeak": ESPEAK_MODEL},
            "default_model": None,
            "priority_classes": {"gold": {}, "free": {}},
        },
    }
    text = revisions.revision_detail(data)
    assert text.startswith("revision:      1\ncreated:       2026-11-21 10:01:56 UTC\n")
    assert "default model: -" in text
    assert "espeak  espeak  127.0.0.1:8101, 10.0.0.2:8101" in text
    assert "espeak  espeak=90, espeak-v2=30" in text
    assert text.endswith("priority classes: free, gold")


def _node(node_id: str, types: dict[str, Any], connected_at: float = 1_800_000_000.0) -> Any:
    return {
        "node_id": node_id,
        "cluster": "ttsgw",
        "envoy_version": "1.40.0",
        "connected_at": connected_at,
        "streams": 1,
        "types": types,
    }


def test_fleet_marks_versions_behind_the_head_and_shows_the_last_nack() -> None:
    in_sync = {t: {"sent": v, "acked": v, "nack": None} for t, v in HEAD.items()}
    long_error = "Proto constraint validation failed (RouteConfigurationValidationError): " * 2
    lagging = {
        **in_sync,
        "rds": {
            "sent": HEAD["rds"],
            "acked": "9" * 16,
            "nack": {"version": HEAD["rds"], "message": long_error, "at": 5.0},
        },
        "cds": {"sent": HEAD["cds"], "acked": HEAD["cds"], "nack": {"message": "old", "at": 1.0}},
    }
    data = {
        "revision": 9,
        "versions": HEAD,
        "nodes": [_node("envoy-a", in_sync), _node("envoy-b", lagging), _node("envoy-c", {})],
    }
    text = live.fleet_view(data, now=1_800_000_000.0 + 3725)
    lines = text.splitlines()
    assert lines[0] == "revision 9, serving cds=cccccccc, eds=eeeeeeee, lds=11111111, rds=22222222"
    assert lines[2].split() == [
        "NODE", "ENVOY", "CONNECTED", "(UTC)", "CDS", "EDS", "LDS", "RDS", "LAST", "NACK"
    ]  # fmt: skip
    assert lines[3].split()[:9] == [
        "envoy-a", "1.40.0", "2027-01-15", "08:00:00", "(1h02m", "ago)",
        "cccccccc", "eeeeeeee", "11111111",
    ]  # fmt: skip
    assert lines[3].endswith("22222222         -")
    assert "99999999 behind  rds: Proto constraint" in lines[4]
    assert lines[4].endswith("…") and len(lines[4].split("rds: ", 1)[1]) == live.NACK_WIDTH - 5
    assert lines[5].split()[-5:] == ["-", "-", "-", "-", "-"]
    assert lines[-1] == f"envoy-b rds 22222222: {long_error.strip()}"


def test_fleet_without_envoys() -> None:
    text = live.fleet_view({"revision": 1, "versions": HEAD, "nodes": []}, now=0)
    assert text.endswith("\n\nno Envoy is connected")


def test_ages() -> None:
    assert age(100, 159) == "59s ago"
    assert age(0, 125) == "2m05s ago"
    assert age(0, 2 * 86400 + 7200) == "2d2h ago"
    assert age(10, 0) == "0s ago"


def test_cache_views() -> None:
    stats = {"hits": 10.0, "misses": 5.0, "bypasses": 0.0, "bytes_served": 1572864.0}
    data = {
        "models": {"espeak": {**stats, "hit_ratio": 2 / 3}},
        "total": {**stats, "hit_ratio": 2 / 3},
    }
    assert live.cache_stats_view(data) == (
        "MODEL   HITS  MISSES  BYPASSES  HIT RATIO  SERVED\n"
        "espeak  10    5       0         66.7%      1.5 MiB\n"
        "TOTAL   10    5       0         66.7%      1.5 MiB"
    )
    assert live.cache_purge_view({"purged": 1, "model": "espeak"}) == (
        "purged 1 cached answer of model espeak"
    )
    assert live.cache_purge_view({"purged": 0, "model": None}) == (
        "purged 0 cached answers (all models)"
    )


def test_priority_classes_and_a_new_key() -> None:
    data = {
        "revision": 4,
        "require_api_keys": True,
        "priority_classes": [
            {"name": "free", "level": "low", "rate_limit_rps": 2.5, "keys": []},
            {"name": "gold", "level": "high", "rate_limit_rps": None, "keys": list("abcd")},
        ],
    }
    assert config.priority_classes_view(data) == (
        "API keys required: yes\n"
        "\n"
        "NAME  LEVEL  RATE LIMIT  KEYS  FINGERPRINTS\n"
        "free  low    2.5/s       0     -\n"
        "gold  high   unlimited   4     a, b, c +1 more"
    )
    created = {"revision": 5, "api_key": "ttsgw-secret", "fingerprint": "0123456789ab"}
    text = config.new_key_view("gold", created)
    assert "\n\n  ttsgw-secret\n\n" in text
    assert "fingerprint 0123456789ab" in text and "only time" in text
