"""How the views write durations, times, ages, sizes and JSON values."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


def utc(value: str | float | None) -> str:
    if value is None:
        return "-"
    when = (
        datetime.fromtimestamp(value, UTC)
        if isinstance(value, int | float)
        else datetime.fromisoformat(value).astimezone(UTC)
    )
    return when.strftime("%Y-%m-%d %H:%M:%S")


def age(then: float, now: float) -> str:
    left = max(0, int(now - then))
    if left < 60:
        return f"{left}s ago"
    if left < 3600:
        return f"{left // 60}m{left % 60:02d}s ago"
    if left < 86400:
        return f"{left // 3600}h{left % 3600 // 60:02d}m ago"
    return f"{left // 86400}d{left % 86400 // 3600}h ago"


def size(n: float) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # unreachable; keeps mypy sure of the return


def count(n: float) -> str:
    # Redis hands counters back as floats; 10.0 hits reads as 10.
    return str(int(n)) if float(n).is_integer() else f"{n:g}"


def value(v: Any) -> str:
    return json.dumps(v, separators=(", ", ": "))
