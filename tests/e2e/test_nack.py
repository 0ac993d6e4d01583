"""A config one Envoy cannot apply: NACKed, shown in `fleet`, never resent in a loop."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def blocked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A control plane and one Envoy whose listener port something else already holds."""
    stack = Stack(Path(tmp_path_factory.mktemp("nack")))
    squatter = socket.socket()
    squatter.bind(("0.0.0.0", stack.settings.listener_port))
    squatter.listen()
    try:
        stack.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await stack.start_control_plane()
        await stack.start_envoy(wait=False)
        yield stack
    finally:
        print(stack.logs())
        await stack.stop()
        squatter.close()


async def lds_nack(stack: Stack, timeout: float = 20) -> dict[str, object]:
    for _ in range(int(timeout / 0.1)):
        fleet = await stack.fleet()
        for node in fleet["nodes"]:
            nack = node["types"].get("lds", {}).get("nack")
            if nack:
                return {"fleet": fleet, "node": node, "nack": nack}
        await asyncio.sleep(0.1)
    raise AssertionError(f"no LDS NACK appeared: {await stack.fleet()}")


async def nack_metric(stack: Stack) -> float:
    async with stack.admin_client() as admin:
        text = (await admin.get("/metrics")).text
    match = re.search(r'^ttsgw_xds_nacks_total\{type="lds"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_nack_is_recorded_and_not_resent(blocked: Stack) -> None:
    found = await lds_nack(blocked)
    node, nack, fleet = found["node"], found["nack"], found["fleet"]
    assert isinstance(nack, dict) and isinstance(node, dict) and isinstance(fleet, dict)
    assert nack["version"] == fleet["versions"]["lds"]
    assert str(blocked.settings.listener_port) in nack["message"]
    # The node keeps what it could apply: clusters and endpoints are ACKed at the head.
    assert node["types"]["cds"]["acked"] == fleet["versions"]["cds"]
    assert node["types"]["lds"]["acked"] is None

    metric_before = await nack_metric(blocked)
    rejected_before = await blocked.envoy_stat("listener_manager.lds.update_rejected")
    await asyncio.sleep(2.0)
    assert await nack_metric(blocked) == metric_before == 1.0
    assert await blocked.envoy_stat("listener_manager.lds.update_rejected") == rejected_before == 1
