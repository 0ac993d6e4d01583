"""Views of the running system: the Envoy fleet and the response cache."""

from __future__ import annotations

from typing import Any

from ttsgw.ops.table import format_table
from ttsgw.ops.views.units import age, count, size, utc

XDS_TYPES = ("cds", "eds", "lds", "rds")
NACK_WIDTH = 60


def _acked_cell(status: dict[str, Any] | None, head: str | None) -> str:
    if not status:
        return "-"  # not subscribed: an Envoy without EDS clusters never asks for endpoints
    acked = status.get("acked")
    if acked is None:
        return "(none) behind" if head else "-"
    return acked[:8] if acked == head else f"{acked[:8]} behind"


def _last_nack(node: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    nacks = [(t, s["nack"]) for t, s in (node.get("types") or {}).items() if s.get("nack")]
    return max(nacks, key=lambda item: item[1].get("at") or 0) if nacks else None


def fleet_view(data: dict[str, Any], now: float) -> str:
    versions = data.get("versions") or {}
    heads = ", ".join(f"{t}={versions[t][:8]}" for t in XDS_TYPES if t in versions)
    title = f"revision {data.get('revision')}, serving {heads}"
    nodes = data.get("nodes") or []
    if not nodes:
        return f"{title}\n\nno Envoy is connected"
    rows, nack_lines = [], []
    for node in nodes:
        nack = _last_nack(node)
        nack_cell = "-"
        if nack is not None:
            kind, detail = nack
            message = " ".join(str(detail.get("message", "")).split())
            nack_cell = f"{kind}: {message}"
            if len(nack_cell) > NACK_WIDTH:
                nack_cell = nack_cell[: NACK_WIDTH - 1] + "…"
                nack_lines.append(
                    f"{node['node_id']} {kind} {detail.get('version', '')[:8]}: {message}"
                )
        connected = node.get("connected_at")
        rows.append(
            [
                node["node_id"],
                node.get("envoy_version"),
                "-" if connected is None else f"{utc(connected)} ({age(connected, now)})",
                *(_acked_cell(node.get("types", {}).get(t), versions.get(t)) for t in XDS_TYPES),
                nack_cell,
            ]
        )
    headers = ["NODE", "ENVOY", "CONNECTED (UTC)", *(t.upper() for t in XDS_TYPES), "LAST NACK"]
    text = f"{title}\n\n{format_table(headers, rows)}"
    if nack_lines:
        text += "\n\nlast NACKs in full:\n" + "\n".join(nack_lines)
    return text


def cache_stats_view(data: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> list[object]:
        return [
            name,
            count(s.get("hits", 0)),
            count(s.get("misses", 0)),
            count(s.get("bypasses", 0)),
            f"{100 * float(s.get('hit_ratio', 0.0)):.1f}%",
            size(s.get("bytes_served", 0)),
        ]

    rows = [row(name, s) for name, s in sorted((data.get("models") or {}).items())]
    rows.append(row("TOTAL", data.get("total") or {}))
    return format_table(["MODEL", "HITS", "MISSES", "BYPASSES", "HIT RATIO", "SERVED"], rows)


def cache_purge_view(data: dict[str, Any]) -> str:
    scope = f"of model {data['model']}" if data.get("model") else "(all models)"
    n = data.get("purged", 0)
    return f"purged {n} cached answer{'s' if n != 1 else ''} {scope}"
