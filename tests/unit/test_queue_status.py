"""The queue aggregate from fake worker answers: sums, waits, busy hints; the admin endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from control_plane.api.app import create_app
from control_plane.domain import (
    BackendSpec,
    DesiredState,
    Endpoint,
    ModelSpec,
    Split,
    default_state,
)
from control_plane.queue_status import (
    EndpointReading,
    HttpQueueFetcher,
    QueuePoller,
    aggregate_readings,
)
from control_plane.service import ControlPlane
from control_plane.store import InMemoryRevisionStore
from control_plane.translator import TranslatorOptions
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def summed(readings: list[EndpointReading]) -> dict[str, Any]:
    """The aggregate as its JSON: the shape the filter and `ttsgw queue` read."""
    return aggregate_readings(readings).model_dump(mode="json")


def worker_answer(
    high: int = 0,
    default: int = 0,
    low: int = 0,
    *,
    in_flight: int = 0,
    rate: float | None = None,
    limit: int = 10,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """The shape of tts_backends' Scheduler.status()."""
    depths = {"high": high, "default": default, "low": low}
    return {
        "object": "queue",
        "engine": "synthetic",
        "batching": True,
        "levels": {
            level: {
                "depth": depth,
                "limit": limit,
                "timeout_s": timeout_s,
                "oldest_wait_s": 0.5 if depth else 0.0,
                "estimated_wait_s": None,
            }
            for level, depth in depths.items()
        },
        "queued": high + default + low,
        "in_flight": in_flight,
        "batch_size": in_flight,
        "max_batch_size": 16,
        "concurrency": None,
        "drain_rate_per_s": rate,
    }


def ok(address: str, status: dict[str, Any]) -> EndpointReading:
    return EndpointReading(address, status, fetched_at=0.0)


class FakeFetcher:
    """Answers per address from a dict; an Exception value is raised instead."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.closed = False

    async def fetch(self, host: str, port: int) -> dict[str, Any]:
        address = f"{host}:{port}"
        self.calls.append(address)
        answer = self.answers[address]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def aclose(self) -> None:
        self.closed = True


def test_sums_depths_in_flight_and_drain_rate_over_endpoints() -> None:
    view = summed(
        [
            ok("a:1", worker_answer(high=1, default=4, in_flight=2, rate=2.0)),
            ok("b:1", worker_answer(default=2, low=3, in_flight=5, rate=3.0)),
        ]
    )
    assert view["in_flight"] == 7
    assert view["queued"] == 10
    assert view["drain_rate_per_s"] == 5.0
    levels = view["levels"]
    assert [levels[lv]["depth"] for lv in ("high", "default", "low")] == [1, 6, 3]
    assert levels["default"]["limit"] == 20
    assert levels["default"]["fill"] == 0.3
    # A new arrival waits behind its own level and every higher one, at 5 requests/s.
    assert levels["high"]["estimated_wait_s"] == 0.2
    assert levels["default"]["estimated_wait_s"] == 1.4
    assert levels["low"]["estimated_wait_s"] == 2.0
    assert levels["default"]["oldest_wait_s"] == 0.5
    assert view["busy"] == "busy"


def test_wait_is_zero_with_nothing_ahead_and_unknown_without_a_drain_rate() -> None:
    idle = summed([ok("a:1", worker_answer(rate=None))])
    assert idle["busy"] == "idle"
    assert idle["drain_rate_per_s"] is None
    assert all(lv["estimated_wait_s"] == 0.0 for lv in idle["levels"].values())

    fresh = summed([ok("a:1", worker_answer(default=3, in_flight=1, rate=None))])
    assert fresh["levels"]["high"]["estimated_wait_s"] == 0.0
    assert fresh["levels"]["default"]["estimated_wait_s"] is None
    assert fresh["levels"]["low"]["estimated_wait_s"] is None


@pytest.mark.parametrize(
    ("answer", "busy"),
    [
        (worker_answer(), "idle"),
        (worker_answer(in_flight=3, rate=1.0), "busy"),
        (worker_answer(default=7, rate=10.0), "busy"),  # 70% full, 0.7 s wait
        (worker_answer(default=8, rate=10.0), "overloaded"),  # 80% full
        (worker_answer(low=4, rate=0.1, timeout_s=30.0), "overloaded"),  # 40 s > 30 s timeout
    ],
)
def test_busy_hint(answer: dict[str, Any], busy: str) -> None:
    assert summed([ok("a:1", answer)])["busy"] == busy


def test_unreachable_endpoints_do_not_count_and_nothing_reachable_is_unknown() -> None:
    stale = EndpointReading("b:1", worker_answer(default=9, in_flight=9), 0.0, error="boom")
    view = summed([ok("a:1", worker_answer(default=1, rate=1.0)), stale])
    assert view["levels"]["default"]["depth"] == 1 and view["in_flight"] == 0
    nothing = summed([stale])
    assert nothing["busy"] == "unknown"
    assert nothing["levels"]["default"]["fill"] is None


def two_backend_state() -> DesiredState:
    state = default_state(Endpoint(host="esp", port=1), Endpoint(host="cv", port=1))
    canary = BackendSpec(
        kind="cosyvoice3", endpoints=[Endpoint(host="cv", port=2), Endpoint(host="cv", port=3)]
    )
    return DesiredState(
        backends={**state.backends, "canary": canary},
        models={
            **state.models,
            "cosyvoice3": ModelSpec(
                splits=[Split(backend="cosyvoice3", weight=90), Split(backend="canary", weight=10)]
            ),
            "parked": ModelSpec(
                splits=[Split(backend="espeak", weight=100), Split(backend="canary", weight=0)]
            ),
        },
        default_model="espeak",
    )


async def test_poller_polls_every_endpoint_once_and_aggregates_per_model() -> None:
    now = [100.0]
    fetcher = FakeFetcher(
        {
            "esp:1": worker_answer(in_flight=1, rate=1.0),
            "cv:1": worker_answer(default=2, in_flight=4, rate=2.0),
            "cv:2": worker_answer(low=1, in_flight=1, rate=1.0),
            "cv:3": httpx.ConnectError("connection refused\non two lines"),
        }
    )
    poller = QueuePoller(two_backend_state, fetcher, clock=lambda: now[0])
    await poller.poll_once()
    assert sorted(fetcher.calls) == ["cv:1", "cv:2", "cv:3", "esp:1"]
    now[0] = 100.5
    view = poller.view().model_dump()
    assert view["age_s"] == 0.5
    assert set(view["models"]) == {"cosyvoice3", "espeak", "parked"}

    cv = view["models"]["cosyvoice3"]
    assert cv["in_flight"] == 5 and cv["queued"] == 3
    assert cv["drain_rate_per_s"] == 3.0
    assert cv["levels"]["default"]["estimated_wait_s"] == round(2 / 3, 3)
    assert cv["levels"]["low"]["estimated_wait_s"] == 1.0
    assert cv["endpoints"] == {"total": 3, "reachable": 2}
    canary = next(b for b in cv["backends"] if b["name"] == "canary")
    assert canary["weight"] == 10
    dead = next(e for e in canary["endpoints"] if e["address"] == "cv:3")
    assert dead["state"] == "unreachable"
    assert dead["error"] == "ConnectError: connection refused on two lines"
    assert dead["queue"] is None and dead["age_s"] is None
    alive = next(e for e in canary["endpoints"] if e["address"] == "cv:2")
    assert alive["state"] == "ok" and alive["age_s"] == 0.5

    # A weight-0 split is shown but gets no traffic, so it does not count.
    parked = view["models"]["parked"]
    assert parked["in_flight"] == 1 and parked["endpoints"] == {"total": 1, "reachable": 1}
    assert [b["name"] for b in parked["backends"]] == ["espeak", "canary"]

    assert set(poller.view("espeak").model_dump()["models"]) == {"espeak"}
    with pytest.raises(KeyError):
        poller.view("nope")


async def test_a_failing_endpoint_keeps_its_last_answer_and_its_age() -> None:
    now = [10.0]
    state = default_state(Endpoint(host="esp", port=1), Endpoint(host="cv", port=1))
    fetcher = FakeFetcher({"esp:1": worker_answer(), "cv:1": worker_answer(in_flight=2)})
    poller = QueuePoller(lambda: state, fetcher, clock=lambda: now[0])
    await poller.poll_once()
    fetcher.answers["cv:1"] = TimeoutError()
    now[0] = 13.0
    await poller.poll_once()
    cv = poller.view("cosyvoice3").model_dump()["models"]["cosyvoice3"]
    endpoint = cv["backends"][0]["endpoints"][0]
    assert endpoint["state"] == "unreachable" and endpoint["error"] == "TimeoutError: TimeoutError"
    assert endpoint["queue"]["in_flight"] == 2 and endpoint["age_s"] == 3.0
    assert cv["busy"] == "unknown" and cv["in_flight"] == 0
    fetcher.answers["cv:1"] = worker_answer()
    await poller.poll_once()
    assert poller.view("cosyvoice3").model_dump()["models"]["cosyvoice3"]["busy"] == "idle"


async def test_endpoints_removed_from_the_state_are_forgotten() -> None:
    states = [two_backend_state()]
    fetcher = FakeFetcher({a: worker_answer() for a in ("esp:1", "cv:1", "cv:2", "cv:3")})
    poller = QueuePoller(lambda: states[0], fetcher)
    await poller.poll_once()
    assert len(poller.readings()) == 4
    states[0] = default_state(Endpoint(host="esp", port=1), Endpoint(host="cv", port=1))
    await poller.poll_once()
    assert sorted(poller.readings()) == ["cv:1", "esp:1"]


async def test_loop_runs_until_closed_and_closes_the_fetcher() -> None:
    state = default_state(Endpoint(host="esp", port=1), Endpoint(host="cv", port=1))
    fetcher = FakeFetcher({"esp:1": worker_answer(), "cv:1": worker_answer()})
    poller = QueuePoller(lambda: state, fetcher, interval_s=0.05)
    await poller.start()
    for _ in range(100):
        if len(fetcher.calls) >= 6:
            break
        await asyncio.sleep(0.02)
    await poller.aclose()
    assert len(fetcher.calls) >= 6 and fetcher.closed


async def test_http_fetcher_reads_the_worker_answer_and_rejects_other_bodies() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/queue"
        if request.url.port == 1:
            return httpx.Response(200, json=worker_answer(in_flight=1))
        if request.url.port == 2:
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(503, json={"error": "loading"})

    fetcher = HttpQueueFetcher(transport=httpx.MockTransport(handler))
    try:
        assert (await fetcher.fetch("w", 1))["in_flight"] == 1
        with pytest.raises(ValueError, match="levels"):
            await fetcher.fetch("w", 2)
        with pytest.raises(httpx.HTTPStatusError):
            await fetcher.fetch("w", 3)
    finally:
        await fetcher.aclose()


# --- the admin endpoint ---------------------------------------------------------


@pytest.fixture
async def cp() -> ControlPlane:
    control_plane = ControlPlane(
        InMemoryRevisionStore(), SnapshotCache(), Fleet(), TranslatorOptions()
    )
    await control_plane.start(default_state())
    return control_plane


async def admin(cp: ControlPlane, poller: QueuePoller | None) -> httpx.AsyncClient:
    app = create_app(cp, admin_token=TOKEN, registry=CollectorRegistry(), queue_poller=poller)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://admin", headers=AUTH
    )


async def test_admin_endpoint_serves_the_view_behind_the_token(cp: ControlPlane) -> None:
    fetcher = FakeFetcher(
        {
            "127.0.0.1:8101": worker_answer(),
            "127.0.0.1:8102": worker_answer(default=1, in_flight=3, rate=2.0),
        }
    )
    poller = QueuePoller(lambda: cp.head.state, fetcher)
    await poller.poll_once()
    async with await admin(cp, poller) as client:
        denied = await client.get("/api/v1/queue", headers={"Authorization": "Bearer wrong"})
        assert denied.status_code == 401
        body = (await client.get("/api/v1/queue")).json()
        assert body["revision"] == cp.head.number
        assert body["object"] == "queue.aggregate"
        assert body["models"]["cosyvoice3"]["in_flight"] == 3
        assert body["models"]["cosyvoice3"]["levels"]["default"]["estimated_wait_s"] == 0.5
        assert body["models"]["espeak"]["busy"] == "idle"

        one = (await client.get("/api/v1/queue", params={"model": "espeak"})).json()
        assert list(one["models"]) == ["espeak"]
        missing = await client.get("/api/v1/queue", params={"model": "nope"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert "/api/v1/queue" in (await client.get("/openapi.json")).json()["paths"]


async def test_admin_endpoint_without_a_poller_is_503(cp: ControlPlane) -> None:
    async with await admin(cp, None) as client:
        response = await client.get("/api/v1/queue")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "queue_status_unavailable"
