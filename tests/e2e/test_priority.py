"""Priority classes for real: a high-priority key keeps working while a low flood is shed."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_gateway import wait_routable

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def add_class(stack: Stack, name: str, level: str) -> str:
    async with stack.admin_client() as admin:
        assert (
            await admin.put(f"/api/v1/priority-classes/{name}", json={"level": level})
        ).status_code == 200
        created = await admin.post(f"/api/v1/priority-classes/{name}/keys?wait=acked")
        assert created.status_code == 201, created.text
        return str(created.json()["api_key"])


async def test_high_priority_succeeds_while_a_low_priority_flood_is_shed(stack: Stack) -> None:
    # A tight DEFAULT budget on espeak, a roomy HIGH one: the flood can only drain its own.
    async with stack.admin_client() as admin:
        backend = (await admin.get("/api/v1/backends/espeak")).json()
        backend.pop("name")
        backend["circuit_breakers"] = {
            "default": {"max_requests": 2, "max_pending_requests": 1},
            "high": {"max_requests": 20, "max_pending_requests": 20},
        }
        r = await admin.put("/api/v1/backends/espeak?wait=acked", json=backend)
        assert r.status_code == 200, r.text
    gold = await add_class(stack, "gold", "high")
    bulk = await add_class(stack, "bulk", "low")
    await wait_routable(stack, "espeak")

    low: Counter[int] = Counter()
    retry_after: set[str] = set()
    stop = asyncio.Event()

    async def flood(client: httpx.AsyncClient, worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            r = await client.post(
                "/v1/audio/speech",
                headers={"Authorization": f"Bearer {bulk}"},
                json={"model": "espeak", "input": f"bulk {worker} number {n} of a long flood"},
            )
            low[r.status_code] += 1
            if r.status_code == 429:
                retry_after.add(r.headers.get("retry-after", ""))
                assert r.json()["error"]["code"] == "shed"

    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        flooders = [asyncio.create_task(flood(client, i)) for i in range(12)]
        await asyncio.sleep(0.5)
        high = []
        for i in range(10):
            r = await client.post(
                "/v1/audio/speech",
                headers={"Authorization": f"Bearer {gold}"},
                json={"model": "espeak", "input": f"gold request {i} goes first"},
            )
            high.append(r.status_code)
        stop.set()
        await asyncio.gather(*flooders)

    assert high == [200] * 10
    assert low[429] > 0, low
    assert set(low) <= {200, 429}, low
    assert retry_after == {"1"}


async def test_required_keys_reject_unknown_callers_with_401(stack: Stack) -> None:
    async with stack.admin_client() as admin:
        policy = (await admin.get("/api/v1/gateway-policy")).json()
        r = await admin.put("/api/v1/gateway-policy", json={**policy, "require_api_keys": True})
        assert r.status_code == 200
    key = await add_class(stack, "members", "default")
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        for _ in range(50):  # until the filter has the new policy
            anonymous = await client.post(
                "/v1/audio/speech", json={"model": "espeak", "input": "hi"}
            )
            if anonymous.status_code == 401:
                break
            await asyncio.sleep(0.1)
        member = await client.post(
            "/v1/audio/speech",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "espeak", "input": "hi there"},
        )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert member.status_code == 200
