"""/api/v1/rollouts through the real admin app (create_app + install_rollouts), over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.rollouts import RolloutController, install_rollouts
from control_plane.service import ControlPlane
from tests.fakes.scripted_metrics import HEALTHY, ScriptedMetrics, stats
from tests.unit.rollouts_rig import INTERVAL, control_plane, until

TOKEN = "t0k"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLOW = {"model": "tts", "canary": "canary", "interval_s": 60}


@pytest.fixture
async def cp() -> ControlPlane:
    return await control_plane()


@pytest.fixture
def metrics() -> ScriptedMetrics:
    return ScriptedMetrics()


@pytest.fixture
async def rig(
    cp: ControlPlane, metrics: ScriptedMetrics, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, RolloutController]]:
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry())
    controller = install_rollouts(app, cp, metrics, tmp_path / "revisions.db")
    await controller.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as c:
        yield c, controller
    await controller.aclose()


async def test_the_rollouts_api_needs_the_token(rig: tuple[httpx.AsyncClient, object]) -> None:
    client, _ = rig
    for method, path in (("GET", "/api/v1/rollouts"), ("POST", "/api/v1/rollouts/1/abort")):
        response = await client.request(method, path, headers={"Authorization": "Bearer no"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    spec = (await client.get("/openapi.json")).json()
    assert {"/api/v1/rollouts", "/api/v1/rollouts/{rollout_id}/promote"} <= set(spec["paths"])


async def test_start_show_list_and_a_healthy_promotion(
    rig: tuple[httpx.AsyncClient, RolloutController], metrics: ScriptedMetrics
) -> None:
    client, controller = rig
    metrics.script("canary", HEALTHY)
    body = {
        "model": "tts",
        "canary": "canary",
        "steps": [10, 100],
        "interval_s": INTERVAL,
        "gates": {"min_requests": 50, "max_p99_ms": 2000},
    }
    started = await client.post("/api/v1/rollouts", json=body, headers={"X-Author": "carol"})
    assert started.status_code == 201, started.text
    data = started.json()
    assert (data["id"], data["status"], data["weight"], data["stable"]) == (
        1,
        "running",
        10,
        "stable",
    )
    assert data["author"] == "carol" and data["steps"] == [10, 100]
    assert data["gates"] == {
        "min_success_rate": 0.99,
        "max_p99_ms": 2000.0,
        "min_requests": 50,
        "max_failed_checks": 1,
    }
    assert [e["kind"] for e in data["events"]] == ["started", "advanced"]
    model = (await client.get("/api/v1/models/tts")).json()
    assert model["splits"] == [
        {"backend": "stable", "weight": 90},
        {"backend": "canary", "weight": 10},
    ]

    await until(lambda: controller.get(1).status == "promoted")
    shown = (await client.get("/api/v1/rollouts/1")).json()
    assert shown["status"] == "promoted" and shown["last_verdict"] == "pass"
    assert shown["last_figures"]["requests"] == 100 and shown["last_figures"]["p99_ms"] == 50.0
    assert shown["events"][-1]["kind"] == "promoted" and shown["now"] >= shown["finished_at"]
    listing = (await client.get("/api/v1/rollouts", params={"model": "tts"})).json()
    assert [r["id"] for r in listing["rollouts"]] == [1]
    assert (await client.get("/api/v1/rollouts", params={"model": "x"})).json()["rollouts"] == []

    events = (await client.get("/api/v1/rollouts/1/events")).json()["events"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and events[2]["verdict"] == "pass"
    later = (await client.get("/api/v1/rollouts/1/events", params={"after": ids[2]})).json()
    assert [e["id"] for e in later["events"]] == ids[3:]
    revisions = (await client.get("/api/v1/revisions", params={"limit": 3})).json()["revisions"]
    assert [r["author"] for r in revisions] == ["rollout:1", "rollout:1", "rollout:1"]


async def test_refusals_have_the_api_error_shape(
    rig: tuple[httpx.AsyncClient, RolloutController],
) -> None:
    client, _ = rig
    cases = [
        ({**SLOW, "steps": [50, 25]}, 422, "steps"),
        ({**SLOW, "gates": {"min_success_rate": 2}}, 422, "gates.min_success_rate"),
        ({**SLOW, "model": "nope"}, 404, "model"),
        ({**SLOW, "canary": "ghost"}, 409, "canary"),
        ({**SLOW, "canary": "stable"}, 422, "canary"),
    ]
    for body, status, field in cases:
        response = await client.post("/api/v1/rollouts", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["field"] == field
    assert (await client.post("/api/v1/rollouts", json=SLOW)).status_code == 201
    again = await client.post("/api/v1/rollouts", json=SLOW)
    assert again.status_code == 409
    assert "already has an active rollout: 1" in again.json()["error"]["message"]
    missing = await client.get("/api/v1/rollouts/99")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await client.post("/api/v1/rollouts/99/pause")).status_code == 404


async def test_admin_writes_that_would_fight_a_rollout_get_409(
    rig: tuple[httpx.AsyncClient, RolloutController],
) -> None:
    client, _ = rig
    assert (await client.post("/api/v1/rollouts", json=SLOW)).status_code == 201
    head = (await client.get("/api/v1/state")).json()["revision"]
    refused = [
        await client.put(
            "/api/v1/models/tts/splits", json={"splits": [{"backend": "stable", "weight": 100}]}
        ),
        await client.post(f"/api/v1/revisions/{head - 1}/restore"),
    ]
    for response in refused:
        assert response.status_code == 409, response.text
        message = response.json()["error"]["message"]
        assert "rollout 1" in message and "ttsgw rollout abort 1" in message
    # The delete route's own "still used" check answers before the guard gets to: 409 either way.
    deleted = await client.delete("/api/v1/backends/canary")
    assert deleted.status_code == 409 and "tts" in deleted.json()["error"]["message"]
    assert (await client.get("/api/v1/state")).json()["revision"] == head

    aborted = await client.post("/api/v1/rollouts/1/abort", headers={"X-Author": "dave"})
    assert aborted.status_code == 200 and aborted.json()["status"] == "aborted"
    assert aborted.json()["events"][-1]["author"] == "dave"
    freed = await client.put(
        "/api/v1/models/tts/splits", json={"splits": [{"backend": "stable", "weight": 100}]}
    )
    assert freed.status_code == 200


async def test_manual_actions(
    rig: tuple[httpx.AsyncClient, RolloutController], metrics: ScriptedMetrics
) -> None:
    client, _ = rig
    metrics.script("canary", stats(requests=0))
    assert (await client.post("/api/v1/rollouts", json=SLOW)).status_code == 201
    paused = (await client.post("/api/v1/rollouts/1/pause")).json()
    assert paused["status"] == "paused" and paused["next_check_at"] is None
    resumed = (await client.post("/api/v1/rollouts/1/resume")).json()
    assert resumed["status"] == "running" and resumed["next_check_at"] > resumed["now"]
    promoted = (await client.post("/api/v1/rollouts/1/promote")).json()
    assert (promoted["status"], promoted["weight"]) == ("promoted", 100)
    model = (await client.get("/api/v1/models/tts")).json()
    assert model["splits"] == [{"backend": "canary", "weight": 100}]
    late = await client.post("/api/v1/rollouts/1/resume")
    assert late.status_code == 409 and "is promoted" in late.json()["error"]["message"]
    # The old stable backend left the splits, so it may be deleted now.
    assert (await client.delete("/api/v1/backends/stable")).status_code == 200
