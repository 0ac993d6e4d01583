"""What tracing costs the gateway: throughput and p99 with tracing off, at 0%, 10% and 100%.

One run starts, for each setting in turn, the real stack on 127.0.0.1 (redis, span relay,
control plane, gateway filter, Envoy) in front of the fixed-response backend of
`benchmarks/cache.py`, on a model with `cache_ttl_s: 0`, so every request crosses Envoy
and the filter and reaches the backend: the gateway's own path, where tracing's cost
shows most (a real worker's synthesis would hide it). With tracing on, Envoy reports
every request to the relay, which keeps errors, slow requests and the ratio; the filter
records full spans only for the ratio. The relay forwards kept traces to a second fixed
backend standing in for Zipkin. It prints the throughput table, the CPU each process spent
per request (from /proc/<pid>/stat around the measured wrk run: on this 2-core box every
process shares the CPU, so any microsecond added anywhere is throughput lost), and the
verdict against the target (<= 5% throughput at 10%), and always exits 0.

    .venv/bin/python benchmarks/tracing.py [--duration 10] [--connections 32] [--settings off,0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _harness import WrkResult, free_port, run_main, run_wrk, wrk_post_script
from cache import (
    CLOCK_TICKS,
    MISS_BODY,
    TOKEN,
    Processes,
    add_miss_model,
    processes,
    serve_fixed,
)

from ttsgw import components
from ttsgw.components import Component, StackSettings

SPEECH = "/v1/audio/speech"
SETTINGS = (("off", None), ("0%", 0.0), ("10%", 0.1), ("100%", 1.0))
TARGET_COST = 0.05
# Columns of the CPU table, by the role a component was started as; wrk is reaped.
CPU_ROLES = {
    "envoy": "envoy",
    "ext-proc": "filter",
    "span-relay": "relay",
    "bench-fixed-backend": "backend",
    "redis": "redis",
    "zipkin-sink": "sink",
    "control-plane": "cp",
}
CPU_COLUMNS = ("envoy", "filter", "relay", "backend", "redis", "sink", "cp", "wrk", "other")


@dataclass
class Row:
    name: str
    wrk: WrkResult
    relay: dict[str, float]
    # CPU seconds per process group during the measured run, per CPU_COLUMNS.
    cpu_s: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def requests(self) -> float:
        return self.wrk.rps * self.elapsed_s


def stack_settings(state_dir: Path, tracing: bool, sink_port: int) -> StackSettings:
    return StackSettings.on_free_ports(
        state_dir,
        envoy_concurrency=1,
        tracing_zipkin_url=f"http://127.0.0.1:{sink_port}/api/v2/spans" if tracing else None,
    )


async def relay_counts(s: StackSettings) -> dict[str, float]:
    if not s.tracing:
        return {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        text = (await client.get(f"http://127.0.0.1:{s.relay_port}/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("ttsgw_relay_traces_total", "ttsgw_relay_spans_received_total")):
            key, value = line.rsplit(" ", 1)
            counts[key.replace("ttsgw_relay_", "")] = float(value)
    return counts


async def measure(
    name: str, ratio: float | None, root: Path, body_file: Path, args: argparse.Namespace
) -> Row:
    state_dir = root / name.replace("%", "pct")
    state_dir.mkdir()
    os.environ["TTSGW_TRACING_SAMPLE_RATIO"] = str(ratio or 0.0)
    sink_port, backend_port = free_port(), free_port()
    s = stack_settings(state_dir, ratio is not None, sink_port)
    async with processes(s.log_dir) as procs:
        await start(procs, s, body_file, backend_port, sink_port)
        lua = wrk_post_script(SPEECH, json.dumps(MISS_BODY), {"content-type": "application/json"})
        url = f"http://127.0.0.1:{s.listener_port}"
        await run_wrk(url, lua, duration_s=2, connections=args.connections, threads=2)  # warm-up
        await asyncio.sleep(1.5)  # let the warm-up's traces be decided outside the window
        before, started = cpu_jiffies(procs), time.monotonic()
        result = await run_wrk(
            url, lua, duration_s=args.duration, connections=args.connections, threads=2
        )
        after, elapsed = cpu_jiffies(procs), time.monotonic() - started
        await asyncio.sleep(2.5)  # the relay's grace, so the counts are decided
        counts = await relay_counts(s)
    cpu_s = {k: (after[k] - before[k]) / CLOCK_TICKS for k in after}
    cpu_s["other"] += cpu_s.pop("machine") - sum(cpu_s[k] for k in CPU_COLUMNS)
    print(f"  {name}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.1f} ms", file=sys.stderr)
    return Row(name, result, counts, cpu_s, elapsed)


def cpu_jiffies(procs: Processes) -> dict[str, int]:
    """CPU ticks so far by CPU_COLUMNS role, wrk's (reaped children), and the machine's."""
    taken = procs.cpu_jiffies()
    by_role: dict[str, int] = dict.fromkeys(CPU_COLUMNS, 0)
    for child in procs.children:
        if child.pid is not None and child.process and child.process.returncode is None:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            role = CPU_ROLES.get(child.component.name.split("[")[0], "other")
            by_role[role] += int(fields[11]) + int(fields[12])
    by_role["wrk"], by_role["machine"] = taken["wrk"], taken["machine"]
    return by_role


async def start(
    procs: Processes, s: StackSettings, body_file: Path, backend_port: int, sink_port: int
) -> None:
    s.state_dir.mkdir(parents=True, exist_ok=True)
    cache_py = str(Path(__file__).with_name("cache.py"))
    for port, role in ((backend_port, "bench-fixed-backend"), (sink_port, "zipkin-sink")):
        argv = [sys.executable, cache_py, "--serve-fixed", str(port), "--body-file", str(body_file)]
        await procs.start(Component(role, argv, f"http://127.0.0.1:{port}/health"))
    await procs.start(components.redis(s))
    if s.tracing:
        await procs.start(components.span_relay(s))
    await procs.start(components.control_plane(s))
    await procs.start(components.ext_proc(s))
    bootstrap = s.state_dir / "envoy-bootstrap.json"
    subprocess.run(components.bootstrap_argv(s, bootstrap), check=True)
    await procs.start(components.envoy(s, bootstrap))
    await add_miss_model(s, backend_port)


def print_cpu_table(rows: list[Row]) -> None:
    """CPU microseconds per request by process (all cores; the 2-core box has 2 s per s)."""
    print(f"{'CPU us/req':<10} " + " ".join(f"{c:>7}" for c in CPU_COLUMNS) + f" {'total':>7}")
    for row in rows:
        per = {k: v / row.requests * 1e6 if row.requests else 0.0 for k, v in row.cpu_s.items()}
        cells = " ".join(f"{per[c]:>7.0f}" for c in CPU_COLUMNS)
        print(f"{row.name:<10} {cells} {sum(per.values()):>7.0f}")
    print(f"{'cores busy':<10} " + " ".join(f"{c:>7}" for c in CPU_COLUMNS) + f" {'total':>7}")
    for row in rows:
        cores = {k: v / row.elapsed_s for k, v in row.cpu_s.items()}
        cells = " ".join(f"{cores[c]:>7.2f}" for c in CPU_COLUMNS)
        print(f"{row.name:<10} {cells} {sum(cores.values()):>7.2f}")


def print_table(rows: list[Row]) -> None:
    base = rows[0].wrk.rps
    head = f"{'tracing':<8} {'req/s':>9} {'vs off':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head} {'errors':>7}  relay")
    for row in rows:
        cost = row.wrk.rps / base - 1 if base else float("nan")
        relay = ", ".join(f"{k}={v:,.0f}" for k, v in sorted(row.relay.items())) or "-"
        print(
            f"{row.name:<8} {row.wrk.rps:>9,.0f} {cost:>+8.1%} {row.wrk.p50_ms:>8.2f} "
            f"{row.wrk.p99_ms:>8.2f} {row.wrk.errors:>7}  {relay}"
        )
    ten = next((r for r in rows if r.name == "10%"), None)
    if ten is None or rows[0].name != "off":
        return
    cost = 1 - ten.wrk.rps / base
    verdict = "PASS" if cost <= TARGET_COST else "MISS"
    print(f"{verdict}: 10% sampling costs {cost:.1%} of throughput (target <= {TARGET_COST:.0%})")


async def main(args: argparse.Namespace) -> int:
    os.environ["TTSGW_ADMIN_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(prefix="ttsgw-bench-tracing-") as tmp:
        root = Path(tmp)
        body_file = root / "body.bin"
        body_file.write_bytes(os.urandom(args.body_bytes))
        chosen = [(n, r) for n, r in SETTINGS if n.rstrip("%") in args.settings]
        rows = [await measure(name, ratio, root, body_file, args) for name, ratio in chosen]
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.duration}s, POST {SPEECH} (cache off), "
        f"{args.body_bytes:,}-byte answer, Envoy --concurrency 1"
    )
    print_table(rows)
    print()
    print_cpu_table(rows)
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per setting")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--body-bytes", type=int, default=16 * 1024)
    p.add_argument(
        "--settings",
        type=lambda v: {x.strip().rstrip("%") for x in v.split(",")},
        default={n.rstrip("%") for n, _ in SETTINGS},
        help="which to run, e.g. off,0 (default: off,0,10,100)",
    )
    p.add_argument("--serve-fixed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--body-file", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_fixed:
        serve_fixed(arguments.serve_fixed, arguments.body_file)
        sys.exit(0)
    sys.exit(run_main(main(arguments)))
