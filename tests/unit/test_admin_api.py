"""Admin API over the real service, translator and snapshot cache (in-memory store)."""

from __future__ import annotations

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
from control_plane.xds.resources import ROUTE
from gateway.cache.memory import MemoryCacheStore
from ttsgw_contract.cache import CachedResponse

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(cp: ControlPlane) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as c:
        yield c


async def test_every_endpoint_but_healthz_needs_the_token(client: httpx.AsyncClient) -> None:
    for path in (
        "/api/v1/backends",
        "/api/v1/models",
        "/api/v1/fleet",
        "/metrics",
        "/openapi.json",
    ):
        response = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
    assert (await client.get("/healthz", headers={})).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/models/{name}/splits" in spec["paths"]


async def test_create_backend_and_model_then_read_back(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/backends",
        json={
            "name": "canary",
            "kind": "espeak",
            "endpoints": [{"host": "127.0.0.1", "port": 9999}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["revision"] == 2
    r = await client.put(
        "/api/v1/models/mix",
        json={"splits": [{"backend": "espeak", "weight": 80}, {"backend": "canary", "weight": 20}]},
    )
    assert r.status_code == 200 and r.json()["revision"] == 3
    model = (await client.get("/api/v1/models/mix")).json()
    assert model["name"] == "mix" and model["timeout_s"] == 60
    assert [s["weight"] for s in model["splits"]] == [80, 20]
    listing = await client.get("/api/v1/backends")
    assert listing.headers["etag"] == '"3"'
    assert {b["name"] for b in listing.json()["backends"]} == {"espeak", "cosyvoice3", "canary"}


async def test_invalid_write_is_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, cp: ControlPlane
) -> None:
    before = cp.snapshot.version
    r = await client.put(
        "/api/v1/models/espeak/splits", json={"splits": [{"backend": "espeak", "weight": -5}]}
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "splits.0.weight"
    r = await client.put(
        "/api/v1/models/espeak/splits", json={"splits": [{"backend": "espeak", "weight": 0}]}
    )
    assert r.status_code == 422
    assert "at least one weight" in r.json()["error"]["message"]
    r = await client.put(
        "/api/v1/backends/x", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    assert cp.head.number == 1 and cp.snapshot.version == before


@pytest.mark.parametrize("weight", ["10", True, 10.5])
async def test_a_weight_that_is_not_an_integer_is_422_naming_it(
    client: httpx.AsyncClient, cp: ControlPlane, weight: object
) -> None:
    r = await client.put(
        "/api/v1/models/espeak/splits", json={"splits": [{"backend": "espeak", "weight": weight}]}
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", "splits.0.weight")
    assert "valid integer" in error["message"]
    assert cp.head.number == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cache_enabled": "true"}, "cache_enabled"),
        ({"require_api_keys": 1}, "require_api_keys"),
        ({"max_input_chars": "100"}, "max_input_chars"),
        ({"max_speed": "2.0"}, "max_speed"),
        ({"max_speed": True}, "max_speed"),
    ],
)
async def test_policy_fields_take_only_their_json_type(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    r = await client.put("/api/v1/gateway-policy", json=body)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == field


async def test_a_float_field_still_takes_an_integer(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/v1/gateway-policy", json={"max_speed": 2})
    assert r.status_code == 200
    policy = (await client.get("/api/v1/gateway-policy")).json()
    assert policy["max_speed"] == 2.0


async def test_dangling_references_are_409_and_change_nothing(
    client: httpx.AsyncClient, cp: ControlPlane
) -> None:
    r = await client.put(
        "/api/v1/models/ghostly", json={"splits": [{"backend": "ghost", "weight": 1}]}
    )
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "models.ghostly.splits.0.backend"
    r = await client.delete("/api/v1/backends/espeak")
    assert r.status_code == 409
    assert "still used by model(s) espeak" in r.json()["error"]["message"]
    r = await client.post(
        "/api/v1/backends", json={"name": "espeak", "endpoints": [{"host": "h", "port": 1}]}
    )
    assert r.status_code == 409
    assert cp.head.number == 1


async def test_if_match_prevents_lost_updates(client: httpx.AsyncClient, cp: ControlPlane) -> None:
    body = {"splits": [{"backend": "espeak", "weight": 50}]}
    ok = await client.put("/api/v1/models/espeak/splits", json=body, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["revision"] == 2
    stale = await client.put("/api/v1/models/espeak/splits", json=body, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "revision_mismatch"
    assert cp.head.number == 2


async def test_weight_change_is_route_only(client: httpx.AsyncClient, cp: ControlPlane) -> None:
    before = cp.snapshot.versions
    r = await client.put(
        "/api/v1/models/espeak/splits",
        json={
            "splits": [{"backend": "espeak", "weight": 60}, {"backend": "cosyvoice3", "weight": 40}]
        },
    )
    assert r.status_code == 200
    after = cp.snapshot.versions
    changed = {t for t in after if after[t] != before[t]}
    assert changed == {ROUTE}


async def test_identical_write_creates_no_revision(client: httpx.AsyncClient) -> None:
    body = {"splits": [{"backend": "espeak", "weight": 100}]}
    r = await client.put("/api/v1/models/espeak/splits", json=body)
    assert r.json() == {**r.json(), "revision": 1, "changed": False}


async def test_revisions_list_show_diff_restore(
    client: httpx.AsyncClient, cp: ControlPlane
) -> None:
    await client.put(
        "/api/v1/models/espeak/splits", json={"splits": [{"backend": "espeak", "weight": 7}]}
    )
    listing = (await client.get("/api/v1/revisions")).json()
    assert listing["head"] == 2 and [r["revision"] for r in listing["revisions"]] == [2, 1]
    shown = (await client.get("/api/v1/revisions/1")).json()
    assert shown["state"]["models"]["espeak"]["splits"][0]["weight"] == 100
    diff = (await client.get("/api/v1/revisions/2/diff")).json()
    assert diff["changes"] == [
        {"path": "models.espeak.splits.0.weight", "op": "changed", "old": 100, "new": 7}
    ]
    restored = (await client.post("/api/v1/revisions/1/restore")).json()
    assert restored["revision"] == 3
    assert cp.head.state == default_state()
    assert (await client.get("/api/v1/revisions/99")).status_code == 404


async def test_wait_acked_with_no_envoys_returns_at_once(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/api/v1/models/espeak/splits?wait=acked&timeout_s=2",
        json={"splits": [{"backend": "espeak", "weight": 9}]},
    )
    assert r.status_code == 200
    assert r.json()["acked"] is True and r.json()["converged_ms"] < 2000


async def test_gateway_config_long_polls(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/v1/gateway-config")).json()
    assert set(first["models"]) == {"espeak", "cosyvoice3"}
    unchanged = await client.get(f"/api/v1/gateway-config?after={first['version']}&timeout_s=0.2")
    assert unchanged.status_code == 304
    await client.put("/api/v1/models/new", json={"splits": [{"backend": "espeak", "weight": 1}]})
    changed = (
        await client.get(f"/api/v1/gateway-config?after={first['version']}&timeout_s=5")
    ).json()
    assert "new" in changed["models"] and changed["version"] != first["version"]


async def test_gateway_config_carries_the_filter_timeouts(cp: ControlPlane) -> None:
    options = TranslatorOptions(ext_proc_message_timeout_ms=300)
    other = ControlPlane(InMemoryRevisionStore(), SnapshotCache(), Fleet(), options)
    await other.start(default_state())
    timeouts = other.gateway_config().timeouts
    assert timeouts.message_timeout_ms == 300
    assert timeouts.max_message_timeout_ms == options.ext_proc_max_message_timeout_ms
    assert other.gateway_config().version != cp.gateway_config().version


async def test_gateway_config_is_built_once_per_revision(
    client: httpx.AsyncClient, cp: ControlPlane
) -> None:
    first = cp.gateway_config()
    assert cp.gateway_config() is first  # every long-poller compares the same object
    served = (await client.get("/api/v1/gateway-config")).json()
    assert served == first.model_dump(mode="json")
    assert served["schema_version"] == 1 and served["revision"] == 1
    await client.put(
        "/api/v1/models/espeak/splits", json={"splits": [{"backend": "espeak", "weight": 5}]}
    )
    assert cp.gateway_config() is not first and cp.gateway_config().revision == 2


async def test_metrics_show_the_revision(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "ttsgw_revision 1.0" in text


async def test_ui_page_is_served_without_the_token(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui/", headers={"Authorization": ""})
    assert page.status_code == 200
    assert "ttsgw admin" in page.text and "/api/v1" in page.text


async def test_cache_stats_and_purge(cp: ControlPlane) -> None:
    store = MemoryCacheStore()
    await store.put(
        "ttsgw:cache:v1:espeak:g:k1", CachedResponse(b"a" * 10, "audio/wav", "espeak"), 60
    )
    await store.put("ttsgw:cache:v1:cosyvoice3:g:k2", CachedResponse(b"b", "audio/wav", "c"), 60)
    for outcome in ("hit", "hit", "miss", "bypass"):
        await store.record("espeak", outcome, 10)  # type: ignore[arg-type]
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry(), cache_store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as c:
        stats = (await c.get("/api/v1/cache")).json()
        assert stats["models"]["espeak"]["hits"] == 2
        assert stats["total"]["hit_ratio"] == pytest.approx(2 / 3)
        assert stats["total"]["bytes_served"] == 20
        purged = (await c.delete("/api/v1/cache", params={"model": "espeak"})).json()
        assert purged == {"purged": 1, "model": "espeak"}
        assert store.entry_count() == 1
        assert (await c.delete("/api/v1/cache")).json()["purged"] == 1
        store.down = True
        down = await c.get("/api/v1/cache")
        assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"


async def test_cache_endpoints_say_when_no_cache_is_configured(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/cache")
    assert r.status_code == 503
    assert "TTSGW_REDIS_URL" in r.json()["error"]["message"]


async def test_gateway_policy_round_trip(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/api/v1/gateway-policy", json={"max_input_chars": 100, "cache_enabled": False}
    )
    assert r.status_code == 200 and r.json()["revision"] == 2
    policy = (await client.get("/api/v1/gateway-policy")).json()
    assert policy["max_input_chars"] == 100 and policy["cache_enabled"] is False
    config = (await client.get("/api/v1/gateway-config")).json()
    assert config["limits"]["max_input_chars"] == 100 and config["cache"]["enabled"] is False
    bad = await client.put("/api/v1/gateway-policy", json={"min_speed": 3, "max_speed": 2})
    assert bad.status_code == 422
