"""Views of canary rollouts: the list, one rollout's detail, and its events as they happen."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ttsgw.ops.table import format_fields, format_table
from ttsgw.ops.views.units import age, utc

TERMINAL = frozenset({"promoted", "rolled_back", "aborted", "failed"})


def steps_inline(steps: list[int], index: int, status: str) -> str:
    """`5% → [25%] → 50% → 100%`: the bracket marks the current step while it is active."""
    active = status not in TERMINAL
    return " → ".join(f"[{s}%]" if active and i == index else f"{s}%" for i, s in enumerate(steps))


def gates_inline(gates: dict[str, Any], interval_s: float) -> str:
    parts = [f"success ≥ {100 * float(gates['min_success_rate']):.2f}%"]
    if gates.get("max_p99_ms") is not None:
        parts.append(f"p99 ≤ {gates['max_p99_ms']:g} ms")
    parts.append(f"≥ {gates['min_requests']} requests per {interval_s:g}s")
    n = gates["max_failed_checks"]
    parts.append(f"{n} failed check{'s' if n != 1 else ''} tolerated")
    return ", ".join(parts)


def figures_inline(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    parts = [f"{figures['requests']} requests in {figures['window_s']:g}s"]
    parts.append(f"{figures['errors_5xx']} 5xx")
    if figures.get("success_rate") is not None:
        parts.append(f"success {100 * figures['success_rate']:.2f}%")
    for q in ("p50", "p95", "p99"):
        value = figures.get(f"{q}_ms")
        if value is not None:
            parts.append(f"{q} {value:.0f} ms")
    return ", ".join(parts)


def _clock(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _weight(rollout: dict[str, Any]) -> str:
    return f"{rollout['weight']}%"


def _step(rollout: dict[str, Any]) -> str:
    return f"{rollout['step_index'] + 1}/{len(rollout['steps'])}"


def rollouts_table(data: dict[str, Any], now: float) -> str:
    rollouts = data.get("rollouts") or []
    if not rollouts:
        return "no rollouts"
    rows = [
        [
            r["id"],
            r["model"],
            r["stable"],
            r["canary"],
            r["status"],
            _weight(r),
            _step(r),
            f"{r['failed_checks']}/{r['checks']}",
            r.get("last_verdict"),
            age(r["updated_at"], now),
        ]
        for r in rollouts
    ]
    headers = ["ID", "MODEL", "STABLE", "CANARY", "STATUS", "WEIGHT", "STEP", "FAILED/CHECKS"]
    return format_table([*headers, "LAST", "UPDATED"], rows)


def event_line(event: dict[str, Any]) -> str:
    """One event as a log line: time, what, weight, verdict and why."""
    what = event["kind"] if event.get("verdict") is None else f"check {event['verdict']}"
    line = f"{_clock(event['at'])}  {what:<12} {event['weight']:>3}%  {event.get('message', '')}"
    if event.get("revision") is not None:
        line += f" (revision {event['revision']})"
    return line.rstrip()


def _next_check(rollout: dict[str, Any], now: float) -> str:
    at = rollout.get("next_check_at")
    if at is None or rollout["status"] != "running":
        return "-"
    return f"in {max(0.0, at - now):.0f}s" if at > now else "due now"


def rollout_detail(rollout: dict[str, Any], now: float | None = None) -> str:
    now = rollout.get("now", now) if now is None else now
    assert now is not None
    tolerated = rollout["gates"]["max_failed_checks"]
    head = format_fields(
        [
            ("rollout", rollout["id"]),
            ("model", rollout["model"]),
            ("stable", rollout["stable"]),
            ("canary", rollout["canary"]),
            ("status", rollout["status"]),
            ("weight", f"{_weight(rollout)} (step {_step(rollout)})"),
            ("steps", steps_inline(rollout["steps"], rollout["step_index"], rollout["status"])),
            ("gates", gates_inline(rollout["gates"], rollout["interval_s"])),
            (
                "checks",
                f"{rollout['checks']}, {rollout['failed_checks']} failed ({tolerated} tolerated)",
            ),
            ("last check", rollout.get("last_verdict")),
            ("figures", figures_inline(rollout.get("last_figures"))),
            ("next check", _next_check(rollout, now)),
            ("started", f"{utc(rollout['created_at'])} UTC by {rollout.get('author')}"),
            ("message", rollout.get("message")),
        ]
    )
    events = rollout.get("events") or []
    if not events:
        return head
    return head + "\n\nevents (UTC):\n" + "\n".join(event_line(e) for e in events)


def final_line(rollout: dict[str, Any]) -> str:
    return f"rollout {rollout['id']} {rollout['status']}: {rollout.get('message', '')}"


def action_result(rollout: dict[str, Any], action: str) -> str:
    return (
        f"rollout {rollout['id']} {action}: {rollout['status']}, canary "
        f"'{rollout['canary']}' at {rollout['weight']}% of model '{rollout['model']}'"
    )
