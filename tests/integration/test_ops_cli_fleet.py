"""`ttsgw fleet` and `--wait` against a real control plane and a real Envoy.

One Envoy finds its listener port taken, so it ACKs clusters but NACKs the listener: the
CLI must show the node, its ACKed versions, LDS as behind, and the NACK. Another is
healthy: a waited split reports its real ACK, and the fleet shows it in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.stack import TOKEN, Stack
from ttsgw import cli

pytestmark = [pytest.mark.e2e]


@contextlib.asynccontextmanager
async def _stack(state_dir: Path, *, squat_listener: bool) -> AsyncIterator[Stack]:
    saved = os.environ.get("TTSGW_ADMIN_TOKEN")
    stack = Stack(state_dir)  # sets TTSGW_ADMIN_TOKEN for its children
    squatter = socket.socket()
    if squat_listener:
        squatter.bind(("0.0.0.0", stack.settings.listener_port))
        squatter.listen()
    try:
        stack.settings.state_dir.mkdir(parents=True)
        await stack.start_control_plane()
        await stack.start_envoy(wait=not squat_listener)
        yield stack
    finally:
        await stack.stop()
        squatter.close()
        if saved is None:
            os.environ.pop("TTSGW_ADMIN_TOKEN", None)
        else:
            os.environ["TTSGW_ADMIN_TOKEN"] = saved


@pytest_asyncio.fixture
async def blocked(tmp_path: Path) -> AsyncIterator[Stack]:
    """Something else holds the listener port, so Envoy NACKs its listener."""
    async with _stack(tmp_path / "stack", squat_listener=True) as stack:
        yield stack


@pytest_asyncio.fixture
async def healthy(tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(tmp_path / "stack", squat_listener=False) as stack:
        await stack.wait_converged()
        yield stack


async def _lds_nacked(stack: Stack) -> dict[str, Any]:
    for _ in range(200):
        fleet = await stack.fleet()
        nodes = fleet["nodes"]
        if nodes and nodes[0]["types"].get("lds", {}).get("nack"):
            cds = nodes[0]["types"].get("cds", {})
            if cds.get("acked") == fleet["versions"]["cds"]:
                return fleet
        await asyncio.sleep(0.1)
    raise AssertionError(f"no LDS NACK appeared: {await stack.fleet()}\n{stack.logs()}")


async def test_fleet_shows_the_node_its_acks_and_its_nack(
    blocked: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = await _lds_nacked(blocked)
    versions = fleet["versions"]
    argv = ["fleet", "--admin-url", blocked.admin, "--token", TOKEN]

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"revision {fleet['revision']}, serving cds={versions['cds'][:8]}")
    row = next((line for line in lines if line.startswith("ttsgw-envoy-1")), out)
    cells = row.split()
    assert cells[1].startswith("1.40")  # Envoy's version, from its node metadata
    assert cells[5] == "ago)"  # connected since: "YYYY-MM-DD HH:MM:SS (Ns ago)"
    assert cells[6] == versions["cds"][:8]  # CDS ACKed at the head, no mark
    assert "(none) behind" in row  # LDS never ACKed
    assert "lds: " in row and "behind" not in row.split("lds: ")[1]
    nack = fleet["nodes"][0]["types"]["lds"]["nack"]["message"]
    assert str(blocked.settings.listener_port) in nack
    assert " ".join(nack.split()) in out  # the full message, under the table or in the cell

    assert cli.main([*argv, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["nodes"][0]["node_id"] == "ttsgw-envoy-1"
    assert as_json["nodes"][0]["types"]["lds"]["nack"]["message"] == nack


async def test_a_waited_split_reports_the_real_envoys_ack(
    healthy: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--admin-url", healthy.admin, "--token", TOKEN]
    split = ["models", "set-split", "espeak", "espeak=90", "cosyvoice3=10", "--wait"]
    assert cli.main([*split, *argv]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].endswith("set splits of espeak (espeak=90, cosyvoice3=10)")
    assert lines[1].startswith("converged: the one connected Envoy ACKed it in "), out
    assert lines[1].endswith(" ms")

    assert cli.main(["fleet", *argv]) == 0
    out = capsys.readouterr().out
    row = next((line for line in out.splitlines() if line.startswith("ttsgw-envoy-1")), out)
    assert "behind" not in row and row.endswith("  -"), out  # in sync, no NACK
    fleet = await healthy.fleet()
    for kind in ("cds", "eds", "lds", "rds"):
        assert fleet["versions"][kind][:8] in row
