"""Cache hits vs Envoy's direct_response ceiling, and what the filter adds on a miss.

One run starts everything on 127.0.0.1 (free ports, a temporary state dir) and measures
with `wrk`, one scenario after the other, so each has the machine to itself:

- ceiling: Envoy alone answering the cached WAV's bytes from a static `direct_response`;
- backend: the fixed-response backend of the miss path, alone (is it the bottleneck?);
- miss without / with the filter, against that backend, on a model with `cache_ttl_s: 0`:
  a static copy of the live Envoy's config minus the ext_proc filter, vs the stack itself;
- hits: ~100 KB of cached WAV through the real Envoy + gateway filter + redis-server.

It prints one table and PASS / MISS against issue 3's targets, and always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    WrkResult,
    direct_response_bootstrap,
    free_port,
    run_main,
    run_wrk,
    static_bootstrap_without,
    static_envoy,
    wrk_post_script,
)

from ttsgw import components
from ttsgw.components import Component, StackSettings
from ttsgw.supervisor import Supervised

TOKEN = "benchmark-admin-token"
SPEECH = "/v1/audio/speech"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
MISS_MODEL, MISS_BACKEND = "bench-miss", "bench-fixed"
# The synthetic CosyVoice3 worker makes 0.08 s of 24 kHz 16-bit mono per character
# (3,840 bytes): these 26 characters are a 99,884-byte WAV.
HIT_BODY = {
    "model": "cosyvoice3",
    "input": "Twenty-six chars of audio.",
    "voice": "alloy",
    "response_format": "wav",
}
MISS_BODY = {**HIT_BODY, "model": MISS_MODEL}
# The filter sets x-tts-model from the body; without the filter the client sets it.
BARE_HEADERS = {"x-tts-model": MISS_MODEL}
# So 32 connections never trip Envoy's default breaker (10 pending / 20 requests).
ROOMY_BREAKER = {"max_connections": 4096, "max_pending_requests": 4096, "max_requests": 4096}

HIT_RATIO_TARGET, HIT_P99_TARGET_MS = 0.25, 15.0
MISS_P50_TARGET_MS, MISS_P99_TARGET_MS = 1.5, 5.0


# Which process is which column of the CPU table; "other" also counts every process on
# the machine that is not ours (other test runs would show up there).
CPU_ROLES = {
    "envoy": "envoy",
    "envoy-ceiling": "envoy",
    "envoy-without-filter": "envoy",
    "ext-proc": "filter",
    "redis": "redis",
    "bench-fixed-backend": "backend",
}
CPU_COLUMNS = ("envoy", "filter", "redis", "backend", "wrk", "other")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the fixed-response backend ----------------------------------------------------------


class FixedResponse(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every request, whatever it asks, gets the same response bytes.

    A raw asyncio protocol because uvicorn here runs on h11 (no httptools, no uvloop) and
    would make the backend, not the filter, the slowest hop of the miss path.
    """

    def __init__(self, response: bytes) -> None:
        self._response = response
        self._buffer = b""
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (consumed := self._request_length()) is not None:
            self._buffer = self._buffer[consumed:]
            assert self._transport is not None
            self._transport.write(self._response)

    def _request_length(self) -> int | None:
        """Bytes of the first complete request in the buffer; None while it is incomplete."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head, start = self._buffer[:end].lower(), end + 4
        if b"transfer-encoding: chunked" in head:
            last = self._buffer.find(b"\r\n0\r\n\r\n", start - 2)
            return None if last < 0 else last + 7
        length = 0
        if (marker := head.find(b"content-length:")) >= 0:
            length = int(head[marker + 15 :].split(b"\r\n", 1)[0])
        return start + length if len(self._buffer) >= start + length else None


def serve_fixed(port: int, body_file: Path) -> None:
    body = body_file.read_bytes()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {len(body)}\r\n\r\n"
    response = head.encode() + body

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: FixedResponse(response), "127.0.0.1", port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(serve())


# --- the processes -----------------------------------------------------------------------


@dataclass
class Processes:
    """Every child the benchmark started; stopped in reverse order whatever happens."""

    log_dir: Path
    children: list[Supervised] = field(default_factory=list)

    async def start(self, component: Component, ready_timeout: float = 60) -> None:
        child = Supervised(component, self.log_dir)
        self.children.append(child)
        await child.start()
        await child.wait_ready(ready_timeout)

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop(grace=3)

    def cpu_jiffies(self) -> dict[str, int]:
        """CPU time so far per column of the CPU table: ours by role, wrk, and the machine's."""
        taken: dict[str, int] = dict.fromkeys(CPU_COLUMNS, 0)
        for child in self.children:
            if child.pid is not None and child.process and child.process.returncode is None:
                fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
                role = CPU_ROLES.get(child.component.name.split("[")[0], "other")
                taken[role] += int(fields[11]) + int(fields[12])
        # wrk is our only child that exits (and is reaped) during a measurement.
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        taken["wrk"] = round((usage.ru_utime + usage.ru_stime) * CLOCK_TICKS)
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        taken["machine"] = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
        return taken

    def kill_all(self) -> None:
        for child in self.children:
            proc = child.process
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def processes(log_dir: Path) -> AsyncIterator[Processes]:
    running = Processes(log_dir)
    try:
        yield running
    finally:
        try:
            await asyncio.shield(running.stop())
        finally:
            running.kill_all()


async def start_stack(procs: Processes, s: StackSettings) -> None:
    """Redis, control plane, filter, synthetic CosyVoice3 worker, Envoy: `ttsgw up`'s argv."""
    await procs.start(components.redis(s))
    await procs.start(components.control_plane(s))
    await procs.start(components.ext_proc(s))
    await procs.start(components.cosyvoice3_worker(s), ready_timeout=120)
    bootstrap = s.state_dir / "envoy-bootstrap.json"
    subprocess.run(components.bootstrap_argv(s, bootstrap), check=True)
    await procs.start(components.envoy(s, bootstrap))


def admin(s: StackSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{s.admin_port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
        trust_env=False,
    )


async def add_miss_model(s: StackSettings, backend_port: int) -> None:
    """The fixed backend and a never-cached model on it, pushed and ACKed by Envoy."""
    backend = {
        "kind": "openai-compatible",
        "endpoints": [{"host": "127.0.0.1", "port": backend_port}],
        "health_check": {"enabled": False},
        "circuit_breakers": {"default": ROOMY_BREAKER, "high": ROOMY_BREAKER},
    }
    model = {"splits": [{"backend": MISS_BACKEND, "weight": 100}], "cache_ttl_s": 0}
    async with admin(s) as client:
        for path, body in ((f"backends/{MISS_BACKEND}", backend), (f"models/{MISS_MODEL}", model)):
            r = await client.put(f"/api/v1/{path}?wait=acked&timeout_s=10", json=body)
            r.raise_for_status()


async def cache_counts(s: StackSettings, model: str) -> dict[str, int]:
    """The filter's own counters: its outcomes for `model`, and Redis circuit-breaker trips.

    Read from the filter's /metrics rather than the Redis stats, which cannot count
    while the filter's breaker keeps it away from Redis.
    """
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        r = await client.get(f"http://127.0.0.1:{s.ext_proc_metrics_port}/metrics")
    r.raise_for_status()
    counts = dict.fromkeys(("hit", "miss", "bypass", "circuit opens"), 0)
    for line in r.text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("ttsgw_cache_requests_total{") and f'model="{model}"' in name:
            outcome = name.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0) + int(float(value))
        elif name == "ttsgw_cache_circuit_open_total":
            counts["circuit opens"] += int(float(value))
    return counts


async def post(
    base: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.post(base + SPEECH, json=body, headers=headers or {})


async def routed(base: str, body: dict[str, Any], headers: dict[str, str], size: int) -> str:
    """Until the fixed backend answers through `base` (the filter learns models by long poll)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        r = await post(base, body, headers)
        if r.headers.get("x-tts-backend") == MISS_BACKEND and len(r.content) == size:
            cache = r.headers.get("x-tts-cache", "-")
            return f"{r.status_code}, {len(r.content):,} bytes, x-tts-cache {cache}"
        if loop.time() > deadline:
            raise RuntimeError(
                f"{base} never reached {MISS_BACKEND}: {r.status_code} {r.text[:300]}"
            )
        await asyncio.sleep(0.2)


async def warm_cache(gateway: str) -> tuple[bytes | None, str]:
    """One miss fills the cache; the same request must then be a hit with the same bytes."""
    first, second = await post(gateway, HIT_BODY), await post(gateway, HIT_BODY)
    outcomes = [r.headers.get("x-tts-cache") for r in (first, second)]
    statuses = f"{first.status_code}/{second.status_code}"
    seen = f"x-tts-cache {outcomes[0]} then {outcomes[1]}, statuses {statuses}"
    hit = first.status_code == second.status_code == 200 and outcomes == ["miss", "hit"]
    if hit and first.content == second.content:
        return second.content, f"{seen}, {len(second.content):,} identical bytes"
    return None, f"{seen}, {len(first.content):,}/{len(second.content):,} bytes"


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    connections: int
    result: WrkResult | None
    note: str = ""
    # Cores busy during the measured run, per CPU_COLUMNS.
    cpu: dict[str, float] = field(default_factory=dict)


async def measure(
    name: str,
    base: str,
    body: dict[str, Any],
    args: argparse.Namespace,
    procs: Processes,
    *,
    connections: int,
    headers: dict[str, str] | None = None,
    counts: Callable[[], Awaitable[dict[str, int]]] | None = None,
) -> Row:
    """wrk's figures, the cores busy, and (with `counts`) how the filter classified them."""
    lua = wrk_post_script(
        SPEECH, json.dumps(body), {"content-type": "application/json", **(headers or {})}
    )
    threads = min(args.threads, connections)
    if args.warmup > 0:
        await run_wrk(base, lua, duration_s=args.warmup, connections=connections, threads=threads)
    counted = await counts() if counts else {}
    before, started = procs.cpu_jiffies(), time.monotonic()
    result = await run_wrk(
        base, lua, duration_s=args.duration, connections=connections, threads=threads
    )
    after, elapsed = procs.cpu_jiffies(), time.monotonic() - started
    notes = []
    if counts:
        await asyncio.sleep(0.5)  # the filter records its stats in the background
        now = await counts()
        notes = [f"{k} +{now[k] - counted[k]}" for k in now if now[k] != counted[k]]
    cores = {k: (after[k] - before[k]) / CLOCK_TICKS / elapsed for k in after}
    cores["other"] += cores.pop("machine") - sum(cores[k] for k in CPU_COLUMNS)
    print(
        f"  {name} @{connections}: {result.rps:,.0f} req/s, p99 {result.p99_ms:.2f} ms",
        file=sys.stderr,
    )
    if result.errors:
        notes.append(f"{result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    return Row(name, connections, result, ", ".join(notes), cores)


def print_cpu_table(rows: list[Row]) -> None:
    """Cores busy per process group during each measured run (2 CPUs: 2.0 is everything)."""
    print(f"{'CPU cores busy':<32} {'conns':>5} " + " ".join(f"{c:>7}" for c in CPU_COLUMNS))
    for row in rows:
        if row.cpu:
            cells = " ".join(f"{row.cpu[c]:>7.2f}" for c in CPU_COLUMNS)
            print(f"{row.name:<32} {row.connections:>5} {cells}")


def print_table(rows: list[Row]) -> None:
    print(
        f"{'scenario':<32} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} note"
    )
    for row in rows:
        r = row.result
        figures = (
            f"{r.rps:>8,.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.errors:>6}"
            if r is not None
            else f"{'-':>8} {'-':>7} {'-':>7} {'-':>6}"
        )
        print(f"{row.name:<32} {row.connections:>5} {figures} {row.note}")


def verdict(ok: bool, what: str, figure: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {what}: {figure}"


def verdicts(rows: dict[str, Row], connections: int) -> list[str]:
    lines = []
    ceiling, hits = rows["ceiling"].result, rows["hits"].result
    if ceiling is not None and hits is not None:
        ratio = hits.rps / ceiling.rps
        lines.append(
            verdict(
                ratio >= HIT_RATIO_TARGET,
                f"hits/ceiling >= {HIT_RATIO_TARGET:.0%}",
                f"{hits.rps:,.0f} / {ceiling.rps:,.0f} req/s = {ratio:.1%}",
            )
        )
        lines.append(
            verdict(
                hits.p99_ms <= HIT_P99_TARGET_MS,
                f"hit p99 <= {HIT_P99_TARGET_MS:g} ms @{connections}",
                f"{hits.p99_ms:.2f} ms",
            )
        )
    else:
        lines.append("n/a   cache hits: not measurable (see the hits row)")
    for c in sorted({1, connections}):
        bare, full = rows[f"miss-{c}"].result, rows[f"miss+{c}"].result
        assert bare is not None and full is not None
        for q, target, a, b in (
            ("p50", MISS_P50_TARGET_MS, bare.p50_ms, full.p50_ms),
            ("p99", MISS_P99_TARGET_MS, bare.p99_ms, full.p99_ms),
        ):
            lines.append(
                verdict(
                    b - a <= target,
                    f"filter adds <= {target:g} ms {q} on a miss @{c}",
                    f"{b - a:+.2f} ms ({a:.2f} -> {b:.2f})",
                )
            )
    return lines


# --- the run -----------------------------------------------------------------------------


@dataclass
class Targets:
    """Where each scenario sends its requests, once everything is up and checked."""

    gateway: str
    ceiling: str
    backend: str
    bare: str
    body: bytes
    hit_ready: bool
    warm_note: str


async def set_up(procs: Processes, s: StackSettings) -> Targets:
    await start_stack(procs, s)
    gateway = f"http://127.0.0.1:{s.listener_port}"
    audio, warm_note = await warm_cache(gateway)
    print(f"  cache warm-up: {warm_note}", file=sys.stderr)
    # The ceiling and the backend send the very bytes a hit sends (or, when the cache
    # could not be warmed, the worker's audio for another 26 characters).
    body = audio or (await post(gateway, {**HIT_BODY, "input": "x" * 26})).content
    body_file = s.state_dir / "body.wav"
    body_file.write_bytes(body)

    backend_port = free_port()
    argv = [sys.executable, __file__, "--serve-fixed", str(backend_port)]
    backend = f"http://127.0.0.1:{backend_port}"
    argv += ["--body-file", str(body_file)]
    await procs.start(Component("bench-fixed-backend", argv, f"{backend}/health"))
    await add_miss_model(s, backend_port)

    ceiling_port, ceiling_admin = free_port(), free_port()
    config = direct_response_bootstrap(ceiling_port, ceiling_admin, body, "audio/wav")
    await start_static_envoy(procs, "envoy-ceiling", s.state_dir, config, ceiling_admin)

    print(f"  with filter: {await routed(gateway, MISS_BODY, {}, len(body))}", file=sys.stderr)
    # Without the filter: the live config (which now has the miss model) minus ext_proc.
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        url = f"http://127.0.0.1:{s.envoy_admin_port}/config_dump?include_eds"
        dump = (await client.get(url)).json()
    bare_port, bare_admin = free_port(), free_port()
    access_log = s.log_dir / "without-filter-access.log"
    config = static_bootstrap_without(dump, EXT_PROC_FILTER, bare_port, bare_admin, access_log)
    await start_static_envoy(procs, "envoy-without-filter", s.state_dir, config, bare_admin)
    bare = f"http://127.0.0.1:{bare_port}"
    seen = await routed(bare, MISS_BODY, BARE_HEADERS, len(body))
    print(f"  without filter: {seen}", file=sys.stderr)
    return Targets(
        gateway,
        f"http://127.0.0.1:{ceiling_port}",
        backend,
        bare,
        body,
        audio is not None,
        warm_note,
    )


async def start_static_envoy(
    procs: Processes, name: str, state_dir: Path, config: dict[str, Any], admin_port: int
) -> None:
    path = state_dir / f"{name}.json"
    path.write_text(json.dumps(config))
    await procs.start(static_envoy(name, path, admin_port))


async def run_scenarios(
    t: Targets, args: argparse.Namespace, procs: Processes, s: StackSettings
) -> dict[str, Row]:
    conns = args.connections
    rows = {
        "ceiling": await measure(
            "Envoy direct_response (ceiling)", t.ceiling, MISS_BODY, args, procs, connections=conns
        ),
        "backend": await measure(
            "fixed backend alone", t.backend, MISS_BODY, args, procs, connections=conns
        ),
    }
    for c in sorted({1, conns}):
        rows[f"miss-{c}"] = await measure(
            "miss, Envoy without filter",
            t.bare,
            MISS_BODY,
            args,
            procs,
            connections=c,
            headers=BARE_HEADERS,
        )
        rows[f"miss+{c}"] = await measure(
            "miss, Envoy + filter",
            t.gateway,
            MISS_BODY,
            args,
            procs,
            connections=c,
            counts=functools.partial(cache_counts, s, MISS_MODEL),
        )
    name = "hits, Envoy + filter + Redis"
    if t.hit_ready:
        rows["hits"] = await measure(
            name,
            t.gateway,
            HIT_BODY,
            args,
            procs,
            connections=conns,
            counts=functools.partial(cache_counts, s, str(HIT_BODY["model"])),
        )
    else:
        rows["hits"] = Row(name, conns, None, f"not measurable: {t.warm_note}")
    return rows


async def main(args: argparse.Namespace) -> int:
    os.environ["TTSGW_ADMIN_TOKEN"] = TOKEN
    ports = ["listener", "envoy_admin", "xds", "admin", "ext_proc", "ext_proc_metrics"]
    ports += ["espeak", "cosyvoice3", "redis"]
    with tempfile.TemporaryDirectory(prefix="ttsgw-bench-cache-") as tmp:
        s = StackSettings(
            state_dir=Path(tmp),
            envoy_concurrency=1,
            **{f"{name}_port": free_port() for name in ports},
        )
        async with processes(s.log_dir) as procs:
            print("starting redis, control plane, filter, worker, backend, Envoys", file=sys.stderr)
            targets = await set_up(procs, s)
            load = os.getloadavg()[0]
            print("measuring...", file=sys.stderr)
            rows = await run_scenarios(targets, args, procs, s)
    print(
        f"\n{len(targets.body):,}-byte WAV bodies; wrk -t{args.threads}, {args.duration:g} s per "
        f"run after {args.warmup:g} s unmeasured; Envoy --concurrency 1; {os.cpu_count()} CPUs; "
        f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print_table(list(rows.values()))
    print()
    print_cpu_table(list(rows.values()))
    print()
    for line in verdicts(rows, args.connections):
        print(line)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per scenario (10)")
    parser.add_argument(
        "--warmup", type=float, default=2, help="unmeasured seconds before each (2)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--serve-fixed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--body-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve_fixed:
        serve_fixed(arguments.serve_fixed, arguments.body_file)
        sys.exit(0)
    sys.exit(run_main(main(arguments)))
