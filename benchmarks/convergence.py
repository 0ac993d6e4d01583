"""Admin write -> every Envoy ACKed: weight-change convergence across config sizes and fleets.

For each fleet size (real Envoy processes) it starts the real control plane and the
Envoys once, then for each config size it loads N backends and N models with one
`PUT /api/v1/state?wait=acked` and makes K weight changes on one model with
`PUT /api/v1/models/{m}/splits?wait=acked`. It records the control plane's own
`converged_ms` (push -> last ACK, measured server-side) and the client's wall time of the
whole admin request, and checks that each change was a route-only (RDS) push.

All Envoys share one listener port: Envoy binds listeners with SO_REUSEPORT on Linux
(`enable_reuse_port` defaults to true), so every Envoy binds it and ACKs LDS; the script
checks that no node NACKed anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from _harness import Stack, rss_mb, run_main, splits_body, stack, summary, synthetic_state

TARGET_CELL = (1000, 16)
TARGET_P50_MS, TARGET_P99_MS = 50.0, 200.0


@dataclass
class Cell:
    size: int
    envoys: int
    load_ms: float | None = None
    converged_ms: list[float | None] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    not_acked: int = 0
    rds_only: bool = True
    problems: list[str] = field(default_factory=list)
    listeners_active: int = 0
    envoy_rss_mb: float = 0.0
    cp_rss_mb: float = 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="models (= backends) per config")
    parser.add_argument("--envoys", default="1,4,16", help="Envoy fleet sizes")
    parser.add_argument("--changes", type=int, default=30, help="weight changes per cell")
    parser.add_argument(
        "--changes-large",
        type=int,
        default=None,
        help="weight changes for the 1000-model cells (default: --changes)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 10, 1 and 2 Envoys")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.envoys, args.changes = "10", "1,2", 5
    args.size_list = [int(s) for s in args.sizes.split(",")]
    args.envoy_list = [int(e) for e in args.envoys.split(",")]
    return args


def _versions_by_node(fleet: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    return {n["node_id"]: {t: s["acked"] for t, s in n["types"].items()} for n in fleet["nodes"]}


def _check_route_only(cell: Cell, before: dict[str, Any], after: dict[str, Any]) -> None:
    """A weight change must move only the RDS version, on the head and on every node."""
    for short in ("cds", "eds", "lds"):
        if before["versions"].get(short) != after["versions"].get(short):
            cell.rds_only = False
            cell.problems.append(f"head {short} version changed on a weight change")
    if before["versions"].get("rds") == after["versions"].get("rds"):
        cell.rds_only = False
        cell.problems.append("head rds version did not change")
    old, new = _versions_by_node(before), _versions_by_node(after)
    for node, types in new.items():
        for short in ("cds", "eds", "lds"):
            if old.get(node, {}).get(short) != types.get(short):
                cell.rds_only = False
                cell.problems.append(f"{node}: acked {short} changed")
        if types.get("rds") != after["versions"].get("rds"):
            cell.problems.append(f"{node}: did not ACK the head rds version")
    for node in after["nodes"]:
        for short, status in node["types"].items():
            if status["nack"]:
                cell.problems.append(f"{node['node_id']} NACKed {short}: {status['nack']}")


async def run_cell(running: Stack, size: int, envoys: int, changes: int) -> Cell:
    cell = Cell(size, envoys)
    async with running.client(timeout=330) as client:
        response = await client.put(
            "/api/v1/state",
            params={"wait": "acked", "timeout_s": 300},
            json=synthetic_state(size),
        )
        response.raise_for_status()
        cell.load_ms = response.json().get("converged_ms")
        await running.wait_converged(envoys)
        model = size // 2
        before = await running.fleet()
        for change in range(changes):
            started = time.perf_counter()
            response = await client.put(
                f"/api/v1/models/m{model}/splits",
                params={"wait": "acked", "timeout_s": 30},
                json=splits_body(size, model, change + 1),
            )
            cell.wall_ms.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            body = response.json()
            if not body.get("changed"):
                cell.problems.append(f"change {change} did not change anything")
            if not body.get("acked"):
                cell.not_acked += 1
            cell.converged_ms.append(body.get("converged_ms"))
        after = await running.fleet()
    _check_route_only(cell, before, after)
    cell.listeners_active = await running.listeners_active()
    if cell.listeners_active != envoys:
        cell.problems.append(f"only {cell.listeners_active}/{envoys} Envoys bound the listener")
    cell.cp_rss_mb = rss_mb(running.control_plane_pid)
    cell.envoy_rss_mb = sum(rss_mb(c.pid) for c in running.children[1:] if c.pid)
    return cell


def _ms(value: float) -> str:
    return f"{value:8.1f}"


def print_table(cells: list[Cell]) -> None:
    print()
    print(
        f"{'models':>6} {'envoys':>6} {'K':>3} | {'cp converged_ms p50/p99/max':^28} | "
        f"{'client wall ms p50/p99/max':^28} | {'load_ms':>8} {'RDS-only':>8} "
        f"{'listening':>9} {'Envoys RSS MB':>13} {'CP RSS MB':>9}"
    )
    for c in cells:
        cp, wall = summary(c.converged_ms), summary(c.wall_ms)
        load = f"{c.load_ms:8.0f}" if c.load_ms is not None else "     n/a"
        print(
            f"{c.size:>6} {c.envoys:>6} {len(c.wall_ms):>3} | {''.join(map(_ms, cp))}    | "
            f"{''.join(map(_ms, wall))}    | {load} {'yes' if c.rds_only else 'NO':>8} "
            f"{f'{c.listeners_active}/{c.envoys}':>9} "
            f"{c.envoy_rss_mb:13.0f} {c.cp_rss_mb:9.0f}"
        )
    for c in cells:
        if c.not_acked:
            print(f"  {c.size}x{c.envoys}: {c.not_acked} change(s) not ACKed within 30 s")
        for problem in c.problems[:5]:
            print(f"  {c.size}x{c.envoys}: {problem}")
    target = [c for c in cells if (c.size, c.envoys) == TARGET_CELL]
    print()
    if not target:
        print(f"target ({TARGET_CELL[0]} models x {TARGET_CELL[1]} Envoys) not run")
        return
    p50, p99, _ = summary(target[0].converged_ms)
    verdict = "PASS" if p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS else "MISS"
    print(
        f"target {TARGET_CELL[0]} models x {TARGET_CELL[1]} Envoys: converged p50 {p50:.1f} ms "
        f"(<= {TARGET_P50_MS:.0f}), p99 {p99:.1f} ms (<= {TARGET_P99_MS:.0f}): {verdict}"
    )


async def main(args: argparse.Namespace) -> int:
    cells: list[Cell] = []
    for envoys in args.envoy_list:
        async with stack(f"convergence-{envoys}") as running:
            started = time.perf_counter()
            await running.start_control_plane()
            await running.start_envoys(envoys)
            print(f"{envoys} Envoy(s) ready in {time.perf_counter() - started:.1f}s", flush=True)
            for size in args.size_list:
                changes = args.changes
                if size >= 1000 and args.changes_large is not None:
                    changes = args.changes_large
                started = time.perf_counter()
                try:
                    cell = await run_cell(running, size, envoys, changes)
                except (httpx.HTTPError, RuntimeError) as exc:
                    print(f"  {size} models x {envoys} Envoys FAILED: {exc!r}", flush=True)
                    continue
                cells.append(cell)
                p50, p99, _ = summary(cell.converged_ms)
                print(
                    f"  {size} models x {envoys} Envoys: {len(cell.wall_ms)} changes, converged "
                    f"p50 {p50:.1f} ms p99 {p99:.1f} ms ({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )
    print_table(cells)
    return 0


def run(argv: list[str] | None = None) -> int:
    return run_main(main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run())
