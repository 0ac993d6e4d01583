"""GET /api/v1/backends/{name}/stats and /models/{name}/stats over a fake metrics source."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.domain import Split, default_state
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from tests.fakes.fake_metrics import FakeMetricsSource

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def cp() -> ControlPlane:
    state = default_state()
    # espeak takes 3/4 of the espeak model's traffic, cosyvoice3 the rest.
    splits = [Split(backend="espeak", weight=75), Split(backend="cosyvoice3", weight=25)]
    model = state.models["espeak"].model_copy(update={"splits": splits})
    state = state.model_copy(update={"models": {**state.models, "espeak": model}})
    control_plane = ControlPlane(
        InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions()
    )
    await control_plane.start(state)
    return control_plane


@pytest.fixture
def metrics() -> FakeMetricsSource:
    return FakeMetricsSource()


async def _client(cp: ControlPlane, metrics: FakeMetricsSource | None) -> httpx.AsyncClient:
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry(), metrics_source=metrics)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://admin", headers=AUTH
    )


@pytest.fixture
async def client(cp: ControlPlane, metrics: FakeMetricsSource) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(cp, metrics) as c:
        yield c


async def test_backend_stats(client: httpx.AsyncClient, metrics: FakeMetricsSource) -> None:
    metrics.set("espeak", requests=200, errors_5xx=10, p99_ms=120.0)
    r = await client.get("/api/v1/backends/espeak/stats", params={"window_s": 30})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == body["cluster"] == "espeak"
    assert (body["requests"], body["errors_5xx"], body["window_s"]) == (200, 10, 30)
    assert body["success_rate"] == pytest.approx(0.95)
    assert body["p99_ms"] == 120.0
    assert metrics.calls == [("espeak", 30)]


async def test_backend_stats_default_window_and_no_traffic(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/backends/cosyvoice3/stats")).json()
    assert body["window_s"] == 60 and body["requests"] == 0
    assert body["success_rate"] is None and body["p99_ms"] is None


async def test_model_stats_per_variant_with_weights(
    client: httpx.AsyncClient, metrics: FakeMetricsSource
) -> None:
    metrics.set("espeak", requests=300, errors_5xx=0, p99_ms=50.0)
    metrics.set("cosyvoice3", requests=100, errors_5xx=20, p99_ms=900.0)
    body = (await client.get("/api/v1/models/espeak/stats", params={"window_s": 10})).json()
    assert body["model"] == "espeak" and body["window_s"] == 10
    assert (body["requests"], body["errors_5xx"]) == (400, 20)
    assert body["success_rate"] == pytest.approx(0.95)
    by_backend = {v["backend"]: v for v in body["variants"]}
    assert by_backend["espeak"]["weight"] == 75
    assert by_backend["espeak"]["configured_share"] == pytest.approx(0.75)
    assert by_backend["espeak"]["observed_share"] == pytest.approx(0.75)
    assert by_backend["cosyvoice3"]["success_rate"] == pytest.approx(0.8)
    assert by_backend["cosyvoice3"]["p99_ms"] == 900.0


async def test_unknown_names_and_bad_windows(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/backends/nope/stats")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.get("/api/v1/models/nope/stats")).status_code == 404
    r = await client.get("/api/v1/backends/espeak/stats", params={"window_s": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "window_s"
    r = await client.get("/api/v1/backends/espeak/stats", params={"window_s": 100_000})
    assert r.status_code == 422


async def test_needs_the_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/backends/espeak/stats", headers={"Authorization": "Bearer x"})
    assert r.status_code == 401


async def test_without_a_metrics_source_it_is_503(cp: ControlPlane) -> None:
    async with await _client(cp, None) as c:
        r = await c.get("/api/v1/backends/espeak/stats")
    assert r.status_code == 503 and r.json()["error"]["code"] == "metrics_unavailable"
