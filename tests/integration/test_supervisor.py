"""The process supervisor behind `ttsgw up`: readiness, restart with backoff, clean stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from ttsgw.components import Component, StackSettings
from ttsgw.stack import PreflightError, preflight
from ttsgw.supervisor import ComponentFailed, Supervised, Supervisor


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_server(port: int) -> Component:
    return Component(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        f"http://127.0.0.1:{port}/",
    )


async def test_crashed_component_is_restarted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    supervisor = Supervisor(tmp_path, ready_timeout=20)
    child = await supervisor.start(http_server(port))
    supervisor.watch()
    first_pid = child.pid
    try:
        with caplog.at_level(logging.WARNING, logger="ttsgw.supervisor"):
            assert child.process is not None
            child.process.send_signal(signal.SIGKILL)
            for _ in range(100):
                if child.restarts == 1 and child.pid != first_pid:
                    break
                await asyncio.sleep(0.1)
            await child.wait_ready(20)
        assert child.restarts == 1 and child.pid != first_pid
        assert any("restart #1" in r.getMessage() for r in caplog.records)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
    finally:
        await supervisor.stop()
    assert child.process is not None and child.process.returncode is not None


async def test_a_component_that_dies_at_start_names_its_last_words(tmp_path: Path) -> None:
    doomed = Component(
        "doomed",
        [sys.executable, "-c", "import sys; print('model dir /nope is missing'); sys.exit(3)"],
        "http://127.0.0.1:9/",
    )
    child = Supervised(doomed, tmp_path)
    await child.start()
    with pytest.raises(ComponentFailed, match="exited with code 3: model dir /nope is missing"):
        await child.wait_ready(10)


def test_preflight_names_the_taken_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        settings = StackSettings(
            state_dir=tmp_path,
            admin_port=taken,
            **{
                f: _free_port()
                for f in (
                    "listener_port",
                    "envoy_admin_port",
                    "xds_port",
                    "ext_proc_port",
                    "ext_proc_metrics_port",
                    "espeak_port",
                    "cosyvoice3_port",
                )
            },
        )
        with pytest.raises(PreflightError, match=f"port {taken} \\(admin API\\) is taken"):
            preflight(settings)
