"""Views of the revision history: the list, one revision's state, and diffs."""

from __future__ import annotations

from typing import Any

from ttsgw.ops.table import format_fields, format_table
from ttsgw.ops.views.config import endpoints, splits_inline
from ttsgw.ops.views.units import utc, value


def revisions_table(data: dict[str, Any]) -> str:
    head = data.get("head")
    rows = [
        [
            f"{r['revision']}{' *' if r['revision'] == head else ''}",
            utc(r.get("created_at")),
            r.get("author"),
            r.get("message"),
        ]
        for r in data["revisions"]
    ]
    table = format_table(["REV", "CREATED (UTC)", "AUTHOR", "MESSAGE"], rows)
    return f"{table}\n\n* head revision {head}"


def revision_detail(data: dict[str, Any]) -> str:
    state = data.get("state") or {}
    head = format_fields(
        [
            ("revision", data["revision"]),
            ("created", f"{utc(data.get('created_at'))} UTC"),
            ("author", data.get("author")),
            ("message", data.get("message")),
            ("default model", state.get("default_model")),
        ]
    )
    backends = [
        [name, b.get("kind"), endpoints(b)]
        for name, b in sorted((state.get("backends") or {}).items())
    ]
    models = [
        [name, splits_inline(m["splits"])]
        for name, m in sorted((state.get("models") or {}).items())
    ]
    classes = sorted(state.get("priority_classes") or {})
    parts = [
        head,
        "backends:\n" + format_table(["NAME", "KIND", "ENDPOINTS"], backends),
        "models:\n" + format_table(["NAME", "SPLITS"], models),
    ]
    if classes:
        parts.append("priority classes: " + ", ".join(classes))
    return "\n\n".join(parts)


def revision_diff(data: dict[str, Any]) -> str:
    changes = data.get("changes") or []
    title = f"revision {data['from']} -> {data['to']}"
    if not changes:
        return f"{title}: no changes"
    lines = [f"{title}: {len(changes)} change{'s' if len(changes) != 1 else ''}"]
    for c in changes:
        if c["op"] == "added":
            lines.append(f"+ {c['path']}: {value(c.get('new'))}")
        elif c["op"] == "removed":
            lines.append(f"- {c['path']}: {value(c.get('old'))}")
        else:
            lines.append(f"~ {c['path']}: {value(c.get('old'))} -> {value(c.get('new'))}")
    return "\n".join(lines)
