"""Shared by the convergence benchmarks: real processes on free ports, clean stop, percentiles.

The processes are launched from `ttsgw.components`, the same argv `ttsgw up` and the
end-to-end tests use, so the numbers are for the real deployables.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from ttsgw import components
from ttsgw.components import StackSettings, free_port
from ttsgw.supervisor import Supervised

TOKEN = "benchmark-admin-token"


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
        settings = StackSettings.on_free_ports(Path(tmp), envoy_concurrency=1)
        running = Stack(settings, [], [])
        try:
            yield running
        finally:
            try:
                await asyncio.shield(running.stop())
            finally:
                running.kill_all()


# --- wrk: HTTP load on loopback, parsed from its --latency report ----------------------

_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass
class WrkResult:
    """One wrk run: throughput, latency percentiles in ms, and every kind of failure."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    non_2xx: int
    raw: str

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


def _wrk_ms(text: str) -> float:
    number = text.rstrip("umsh")
    return float(number) * _WRK_UNITS[text[len(number) :]]


def parse_wrk(report: str) -> WrkResult:
    """Read wrk 4.x's `--latency` report; a field wrk did not print stays 0 / NaN."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, report, re.MULTILINE)

    percentiles = {
        int(m[1]): _wrk_ms(m[2])
        for m in re.finditer(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+\w+)\s*$", report, re.MULTILINE)
    }
    total = find(r"^\s*(\d+) requests in")
    rps = find(r"^Requests/sec:\s+([\d.]+)")
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    non_2xx = find(r"Non-2xx or 3xx responses: (\d+)")
    return WrkResult(
        requests=int(total[1]) if total else 0,
        rps=float(rps[1]) if rps else math.nan,
        p50_ms=percentiles.get(50, math.nan),
        p99_ms=percentiles.get(99, math.nan),
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        raw=report,
    )


def wrk_post_script(path: str, body: str, headers: dict[str, str]) -> str:
    """A wrk Lua script that sends the same POST on every request."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.path = {json.dumps(path)}",
        f"wrk.body = {json.dumps(body)}",
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


async def run_wrk(
    url: str,
    lua: str,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    timeout_s: float = 5.0,
) -> WrkResult:
    """Run wrk for `duration_s` and parse its report; killed if it overstays by 30 s."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), duration_s + 30)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        os.unlink(script.name)
    return parse_wrk(out.decode(errors="replace"))


# --- static Envoys: a direct_response ceiling, and a live config without one filter -----

_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def _loopback(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def direct_response_bootstrap(
    port: int, admin_port: int, body: bytes, content_type: str
) -> dict[str, Any]:
    """Envoy alone: every request gets `body` from a direct_response; only the router filter."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {
            "status": 200,
            "body": {"inline_bytes": base64.b64encode(body).decode()},
        },
        "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type}}],
    }
    hcm = {
        "@type": _HCM_TYPE,
        "stat_prefix": "ceiling",
        "route_config": {
            "name": "ceiling",
            # The default cap is 4 KiB.
            "max_direct_response_body_size_bytes": len(body),
            "virtual_hosts": [{"name": "ceiling", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": [_ROUTER],
    }
    chain = {
        "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    }
    listener = {"name": "ceiling", "address": _loopback(port), "filter_chains": [chain]}
    return {
        "admin": {"address": _loopback(admin_port)},
        "static_resources": {"listeners": [listener]},
    }


def _untyped(resource: dict[str, Any]) -> dict[str, Any]:
    """A dumped resource as a bootstrap field: the dump's top-level `@type` removed."""
    return {k: v for k, v in resource.items() if k != "@type"}


def _static_assignment(name: str, dumped: dict[str, Any]) -> dict[str, Any]:
    """Only the endpoints' addresses: a dump spells unset weights as 0, which Envoy refuses."""
    hosts = [
        {"endpoint": {"address": lb["endpoint"]["address"]}}
        for locality in dumped.get("endpoints", [])
        for lb in locality.get("lb_endpoints", [])
    ]
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": hosts}]}


def static_bootstrap_without(
    dump: dict[str, Any], http_filter: str, port: int, admin_port: int, access_log: Path
) -> dict[str, Any]:
    """A live Envoy's `/config_dump?include_eds`, made static, minus one HTTP filter.

    Everything else stays the control plane's own output: listener, HCM (access log,
    request ids, local replies), routes with their retries and timeouts, clusters with
    their breakers. EDS clusters become STATIC with the endpoints Envoy had; RDS becomes
    the route table inline; the listener moves to `port`, its access log to `access_log`.
    """
    configs = {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}
    routes = {
        r["route_config"]["name"]: r["route_config"]
        for r in configs["RoutesConfigDump"].get("dynamic_route_configs", [])
    }
    endpoints = {
        e["endpoint_config"]["cluster_name"]: e["endpoint_config"]
        for e in configs["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])
    }
    clusters = []
    for entry in configs["ClustersConfigDump"].get("dynamic_active_clusters", []):
        cluster = _untyped(entry["cluster"])
        if cluster.get("type") == "EDS":
            cluster["type"] = "STATIC"
            cluster.pop("eds_cluster_config", None)
            cluster["load_assignment"] = _static_assignment(
                cluster["name"], endpoints.get(cluster["name"], {})
            )
        clusters.append(cluster)
    listeners = []
    for entry in configs["ListenersConfigDump"].get("dynamic_listeners", []):
        # A deep copy: the HCMs are edited in place below.
        listener = _untyped(json.loads(json.dumps(entry["active_state"]["listener"])))
        listener["address"] = _loopback(port)
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                hcm["route_config"] = _untyped(routes[hcm.pop("rds")["route_config_name"]])
                hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != http_filter]
                for log in hcm.get("access_log", []):
                    log["typed_config"]["path"] = str(access_log)
        listeners.append(listener)
    return {
        "admin": {"address": _loopback(admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def static_envoy(name: str, bootstrap: Path, admin_port: int) -> components.Component:
    """A one-worker Envoy on a bootstrap file, ready when its admin /ready answers 200."""
    argv = [components.envoy_binary() or "envoy", "-c", str(bootstrap), "--disable-hot-restart"]
    argv += ["--concurrency", "1", "--log-level", "warning"]
    return components.Component(name, argv, f"http://127.0.0.1:{admin_port}/ready")


# --- steady client traffic, each answer stamped with the backend that made it ----------


@dataclass(frozen=True)
class Reply:
    """One client request's outcome: when it ended (monotonic), its status, its backend."""

    at: float
    # 0: no HTTP answer at all (connection error, timeout).
    status: int
    # Envoy's `x-tts-backend` (the cluster that answered); "" without one.
    backend: str


async def steady_get(
    base_url: str,
    path: str,
    params: dict[str, str],
    *,
    loops: int,
    pause_s: float,
    stop: asyncio.Event,
    replies: list[Reply],
) -> None:
    """`loops` closed loops of GET `path` until `stop` is set, each pausing `pause_s` between
    requests; every outcome is appended to `replies` as it arrives."""

    async def loop(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await client.get(path, params=params)
                replies.append(
                    Reply(time.monotonic(), r.status_code, r.headers.get("x-tts-backend", ""))
                )
            except httpx.HTTPError:
                replies.append(Reply(time.monotonic(), 0, ""))
            await asyncio.sleep(pause_s)

    async with httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as client:
        await asyncio.gather(*(loop(client) for _ in range(loops)))
