"""Priority classes over the admin API: keys are shown once, stored hashed, and revocable."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.domain import default_state
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet

AUTH = {"Authorization": "Bearer t"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    cp = ControlPlane(InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions())
    await cp.start(default_state())
    app = create_app(cp, admin_token="t", registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as c:
        yield c


async def test_key_is_shown_once_and_stored_only_as_a_hash(client: httpx.AsyncClient) -> None:
    assert (
        await client.put("/api/v1/priority-classes/gold", json={"level": "high"})
    ).status_code == 200
    created = (await client.post("/api/v1/priority-classes/gold/keys")).json()
    key = created["api_key"]
    assert key.startswith("ttsgw-") and created["revision"] == 3
    listing = (await client.get("/api/v1/priority-classes")).json()
    [gold] = listing["priority_classes"]
    assert gold == {
        "name": "gold",
        "level": "high",
        "rate_limit_rps": None,
        "keys": [created["fingerprint"]],
    }
    state = (await client.get("/api/v1/state")).json()["state"]
    assert state["priority_classes"]["gold"]["api_key_hashes"] == [
        hashlib.sha256(key.encode()).hexdigest()
    ]
    assert key not in (await client.get("/api/v1/revisions/3")).text
    config = (await client.get("/api/v1/gateway-config")).json()
    assert config["auth"]["keys"] == {hashlib.sha256(key.encode()).hexdigest(): "gold"}


async def test_own_key_revoke_and_errors(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/priority-classes/bulk", json={"level": "low", "rate_limit_rps": 5})
    mine = "my-own-key-0123456789"
    added = await client.post("/api/v1/priority-classes/bulk/keys", json={"api_key": mine})
    assert added.status_code == 201 and added.json()["api_key"] == mine
    await client.put("/api/v1/priority-classes/gold", json={"level": "high"})
    twice = await client.post("/api/v1/priority-classes/gold/keys", json={"api_key": mine})
    assert twice.status_code == 409 and "bulk" in twice.json()["error"]["message"]
    fp = added.json()["fingerprint"]
    assert (await client.delete(f"/api/v1/priority-classes/bulk/keys/{fp}")).status_code == 200
    gone = await client.delete(f"/api/v1/priority-classes/bulk/keys/{fp}")
    assert gone.status_code == 404
    assert (await client.post("/api/v1/priority-classes/nope/keys")).status_code == 404
    bad = await client.put("/api/v1/priority-classes/gold", json={"level": "urgent"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "level"
    short = await client.post("/api/v1/priority-classes/gold/keys", json={"api_key": "short"})
    assert short.status_code == 422


async def test_changing_the_level_keeps_the_keys(client: httpx.AsyncClient) -> None:
    await client.put("/api/v1/priority-classes/gold", json={"level": "high"})
    fp = (await client.post("/api/v1/priority-classes/gold/keys")).json()["fingerprint"]
    await client.put("/api/v1/priority-classes/gold", json={"level": "low"})
    gold = (await client.get("/api/v1/priority-classes/gold")).json()
    assert gold["level"] == "low" and gold["keys"] == [fp]
