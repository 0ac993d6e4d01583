"""Shared by the convergence benchmarks: real processes on free ports, clean stop, percentiles.

The processes are launched from `ttsgw.components`, the same argv `ttsgw up` and the
end-to-end tests use, so the numbers are for the real deployables.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from ttsgw import components
from ttsgw.components import StackSettings
from ttsgw.supervisor import Supervised

TOKEN = "benchmark-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 30 samples is the largest one, never interpolated down."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: Iterable[float | None]) -> tuple[float, float, float]:
    """(p50, p99, max), NaN when there is nothing to summarize."""
    real = [v for v in values if v is not None]
    if not real:
        return math.nan, math.nan, math.nan
    return percentile(real, 50), percentile(real, 99), max(real)


def run_main(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run where Ctrl-C and SIGTERM unwind `main`, so its `finally` stops the stack."""
    # A shell starts background jobs with SIGINT ignored; Ctrl-C / kill -INT must still work.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every process the benchmark started was stopped", file=sys.stderr)
        return 130


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from /proc/<pid>/status (VmRSS is in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def synthetic_state(n: int, *, start_port: int = 1) -> dict[str, Any]:
    """N backends and N models; model i splits over backend i and backend (i+1) % N.

    Endpoints are 127.0.0.1 ports nobody listens on, and health checks are off, so a
    thousand clusters in many Envoys do not probe anything.
    """
    backends = {
        f"b{i}": {
            "kind": "openai-compatible",
            "endpoints": [{"host": "127.0.0.1", "port": start_port + i}],
            "health_check": {"enabled": False},
        }
        for i in range(n)
    }
    models = {
        f"m{i}": {
            "splits": [
                {"backend": f"b{i}", "weight": 50},
                {"backend": f"b{(i + 1) % n}", "weight": 50},
            ]
            if n > 1
            else [{"backend": "b0", "weight": 100}]
        }
        for i in range(n)
    }
    return {"backends": backends, "models": models}


def splits_body(n: int, model_index: int, change: int) -> dict[str, Any]:
    """A weight change for model `model_index`; consecutive changes always differ."""
    first = 10 + (change % 81)
    second = f"b{(model_index + 1) % n}" if n > 1 else None
    splits = [{"backend": f"b{model_index}", "weight": first}]
    if second is not None:
        splits.append({"backend": second, "weight": 100 - first})
    return {"splits": splits}


@dataclass
class Stack:
    """A control plane and any number of Envoys, stopped in reverse order whatever happens."""

    settings: StackSettings
    children: list[Supervised]
    envoy_admin_ports: list[int]

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.settings.admin_port}"

    @property
    def control_plane_pid(self) -> int:
        pid = self.children[0].pid
        assert pid is not None
        return pid

    def client(self, timeout: float = 120) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.admin, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout
        )

    async def start_control_plane(self) -> None:
        component = components.control_plane(self.settings)
        # No seeded espeak/cosyvoice3 backends: the benchmark loads its own state.
        component = replace(component, argv=[*component.argv, "--no-seed"])
        await self._start(component)

    async def start_envoys(self, count: int) -> None:
        """`count` real Envoys, each with its own node id, admin port and bootstrap."""
        starting = []
        for i in range(count):
            node_id = f"bench-envoy-{i + 1}"
            settings = self.settings.model_copy(update={"envoy_admin_port": free_port()})
            self.envoy_admin_ports.append(settings.envoy_admin_port)
            bootstrap = self.settings.state_dir / f"bootstrap-{node_id}.json"
            subprocess.run(components.bootstrap_argv(settings, bootstrap, node_id), check=True)
            child = Supervised(
                components.envoy(settings, bootstrap, node_id), self.settings.log_dir
            )
            self.children.append(child)
            await child.start()
            starting.append(child)
        await asyncio.gather(*(c.wait_ready(120) for c in starting))

    async def _start(self, component: components.Component) -> Supervised:
        child = Supervised(component, self.settings.log_dir)
        self.children.append(child)
        await child.start()
        await child.wait_ready(60)
        return child

    async def stop(self) -> None:
        # Envoys first, all at once; then the control plane.
        envoys, cp = self.children[1:], self.children[:1]
        await asyncio.gather(*(c.stop(grace=5) for c in envoys), return_exceptions=True)
        await asyncio.gather(*(c.stop(grace=5) for c in cp), return_exceptions=True)

    def kill_all(self) -> None:
        """Last resort (a second Ctrl-C, a crash in stop): SIGKILL every child we started."""
        for child in self.children:
            proc = child.process
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    async def listeners_active(self) -> int:
        """How many Envoys have their listener bound (all share one port via SO_REUSEPORT)."""
        active = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for port in self.envoy_admin_ports:
                url = f"http://127.0.0.1:{port}/stats?filter=^listener_manager.total_listeners_active$"
                text = (await client.get(url)).text
                active += text.strip().endswith(": 1")
        return active

    async def fleet(self) -> dict[str, Any]:
        async with self.client(timeout=30) as client:
            response = await client.get("/api/v1/fleet")
            response.raise_for_status()
            return dict(response.json())

    async def wait_converged(self, nodes: int, timeout: float = 300) -> dict[str, Any]:
        """Until `nodes` node ids each ACKed the head version of every type (as `/fleet` shows)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            fleet = await self.fleet()
            done = [
                n
                for n in fleet["nodes"]
                if all(
                    n["types"].get(t, {}).get("acked") == v for t, v in fleet["versions"].items()
                )
            ]
            if len(done) >= nodes:
                return fleet
            if loop.time() > deadline:
                nacks = {
                    n["node_id"]: {t: s["nack"] for t, s in n["types"].items() if s["nack"]}
                    for n in fleet["nodes"]
                }
                raise RuntimeError(
                    f"{len(done)}/{nodes} nodes converged after {timeout:.0f}s; NACKs: {nacks}"
                )
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def stack(name: str, keep_logs: bool = False) -> AsyncIterator[Stack]:
    """A fresh state dir and free ports; every process started inside is stopped on exit."""
    os.environ["TTSGW_ADMIN_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(prefix=f"ttsgw-{name}-") as tmp:
        settings = StackSettings(
            state_dir=Path(tmp),
            listener_port=free_port(),
            envoy_admin_port=free_port(),
            xds_port=free_port(),
            admin_port=free_port(),
            ext_proc_port=free_port(),
            envoy_concurrency=1,
        )
        running = Stack(settings, [], [])
        try:
            yield running
        finally:
            try:
                await asyncio.shield(running.stop())
            finally:
                running.kill_all()
