"""The view of `ttsgw queue`: per model a header line and a table of its queue levels."""

from __future__ import annotations

from typing import Any

from ttsgw.ops.table import format_table
from ttsgw.ops.views.units import seconds

LEVELS = ("high", "default", "low")


def _percent(fill: float | None) -> str | None:
    return None if fill is None else f"{100 * fill:.0f}%"


def _model_block(name: str, model: dict[str, Any]) -> str:
    endpoints = model.get("endpoints") or {}
    rate = model.get("drain_rate_per_s")
    header = (
        f"{name}: {model.get('busy', 'unknown')}, {model.get('in_flight', 0)} in flight, "
        f"{model.get('queued', 0)} queued, drain {'-' if rate is None else f'{rate:g}/s'}, "
        f"{endpoints.get('reachable', 0)}/{endpoints.get('total', 0)} endpoints reachable"
    )
    levels = model.get("levels") or {}
    rows = []
    for level in LEVELS:
        lv = levels.get(level) or {}
        rows.append(
            [
                level,
                lv.get("depth", 0),
                lv.get("limit"),
                _percent(lv.get("fill")),
                seconds(lv.get("estimated_wait_s")),
                seconds(lv.get("oldest_wait_s")),
            ]
        )
    table = format_table(["LEVEL", "DEPTH", "LIMIT", "FILL", "EST WAIT", "OLDEST"], rows)
    problems = [
        f"  {backend.get('name')} {ep.get('address')} unreachable: {ep.get('error')}"
        for backend in model.get("backends") or []
        for ep in backend.get("endpoints") or []
        if ep.get("state") != "ok"
    ]
    return "\n".join([header, table, *problems])


def queue_view(data: dict[str, Any]) -> str:
    models = data.get("models") or {}
    if not models:
        return "no models are configured"
    blocks = [_model_block(name, models[name]) for name in sorted(models)]
    age = data.get("age_s")
    footer = "workers not polled yet" if age is None else f"polled {age:g}s ago"
    return "\n\n".join(blocks) + f"\n\n{footer}"
