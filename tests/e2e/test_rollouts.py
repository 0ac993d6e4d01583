"""Canary rollouts for real: Envoy's own numbers (metrics_service) gate the steps.

One real Envoy, the gateway filter and the control plane with its rollout controller;
two controllable test backends, `stable` and `canary`, as the two variants of a model
(a fresh model per test, so every rollout starts from `stable=100`). Client traffic is
4 loops of `GET /v1/audio/voices?model=M` (the cheapest routed request the test backend
answers) and each response's `x-tts-backend` says which variant made it.

Timing: Envoy flushes its stats every 2 s and a check at T judges the flushes that
arrived in (T - interval, T], so intervals of 4-6 s hold two or three flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.e2e.controllable import ControllableBackend, start_and_register
from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_gateway import wait_routable

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

STABLE, CANARY = "stable", "canary"
STEPS = [5, 25, 50, 100]
LOOPS = 4
# Envoy's stats flush period (the stack's default).
FLUSH_S = 2.0
# Between a loop's requests: ~150 req/s in all, so 5% of it is ~30 canary requests per 4 s.
PAUSE_S = 0.02


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """No TTS workers: the seeded espeak/cosyvoice3 backends stay unhealthy and unused."""
    state_dir = Path(tmp_path_factory.mktemp("rollout-stack"))
    async with running_stack(state_dir, workers=False) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def variants(stack: Stack) -> dict[str, ControllableBackend]:
    stable, canary = await asyncio.gather(
        start_and_register(stack, STABLE), start_and_register(stack, CANARY)
    )
    return {STABLE: stable, CANARY: canary}


@pytest_asyncio.fixture(loop_scope="module")
async def healthy(variants: dict[str, ControllableBackend]) -> dict[str, ControllableBackend]:
    """Both variants fast and error-free, their counts zeroed, at the start of each test.

    The canary cluster's window is shared by every test's model, so first let the last
    flush carrying the previous test's canary traffic arrive: this test's first check
    then judges this test's traffic only.
    """
    await asyncio.sleep(FLUSH_S + 0.5)
    await asyncio.gather(
        *(v.control(error_rate=0, latency_ms=0, reset=True) for v in variants.values())
    )
    return variants


# --- client traffic -------------------------------------------------------------------


@dataclass
class Traffic:
    """Steady client load on one model; every response as (monotonic time, status, backend)."""

    stack: Stack
    model: str
    responses: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _loop(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                r = await client.get("/v1/audio/voices", params={"model": self.model})
                self.responses.append(
                    (time.monotonic(), r.status_code, r.headers.get("x-tts-backend", ""))
                )
            except httpx.HTTPError as exc:
                self.responses.append((time.monotonic(), 0, type(exc).__name__))
            await asyncio.sleep(PAUSE_S)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        async with httpx.AsyncClient(base_url=self.stack.gateway, timeout=10) as client:
            tasks = [asyncio.create_task(self._loop(client)) for _ in range(LOOPS)]
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*tasks)

    def outcomes(self, since: float = 0.0) -> Counter[tuple[str, int]]:
        return Counter((b, s) for at, s, b in self.responses if at >= since)


# --- admin API helpers ----------------------------------------------------------------


async def add_model(stack: Stack, model: str) -> None:
    body = {"splits": [{"backend": STABLE, "weight": 100}], "cache_ttl_s": 0}
    async with stack.admin_client() as admin:
        r = await admin.put(f"/api/v1/models/{model}?wait=acked", json=body)
        assert r.status_code == 200, r.text
    await wait_routable(stack, model)


async def start_rollout(stack: Stack, model: str, **spec: Any) -> dict[str, Any]:
    body = {"model": model, "canary": CANARY, **spec}
    async with stack.admin_client() as admin:
        r = await admin.post("/api/v1/rollouts", json=body, headers={"X-Author": "e2e"})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    assert (data["status"], data["stable"], data["weight"]) == ("running", STABLE, spec_first(body))
    return data


def spec_first(body: dict[str, Any]) -> int:
    return int(body.get("steps", STEPS)[0])


async def get_rollout(stack: Stack, rollout_id: int) -> dict[str, Any]:
    async with stack.admin_client() as admin:
        r = await admin.get(f"/api/v1/rollouts/{rollout_id}", params={"events": 1000})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_rollout(
    stack: Stack, rollout_id: int, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = await get_rollout(stack, rollout_id)
        if done(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {rollout_id} did not get there in {timeout}s: {data}")
        await asyncio.sleep(0.2)


async def model_splits(stack: Stack, model: str) -> dict[str, int]:
    async with stack.admin_client() as admin:
        r = await admin.get(f"/api/v1/models/{model}")
    assert r.status_code == 200, r.text
    return {s["backend"]: s["weight"] for s in r.json()["splits"]}


def kinds(data: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in data["events"]]


def checks(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in data["events"] if e["kind"] == "check"]


def ended(data: dict[str, Any]) -> bool:
    return data["status"] not in ("pending", "running", "paused")


# --- the tests ------------------------------------------------------------------------


async def test_a_healthy_canary_is_promoted_through_every_step(
    stack: Stack, healthy: dict[str, ControllableBackend]
) -> None:
    model = "ro-healthy"
    await add_model(stack, model)
    async with Traffic(stack, model).running() as traffic:
        started = await start_rollout(
            stack,
            model,
            steps=STEPS,
            interval_s=4,
            gates={"min_success_rate": 0.99, "max_p99_ms": 1000, "min_requests": 10},
        )
        data = await wait_rollout(stack, started["id"], ended, timeout=4 * 4 + 15)
        await asyncio.sleep(1.0)  # the promotion's route push reaches Envoy
        after_promotion = time.monotonic()
        await asyncio.sleep(1.0)

    assert data["status"] == "promoted", data
    assert (data["weight"], data["failed_checks"]) == (100, 0)
    assert await model_splits(stack, model) == {CANARY: 100}

    # One `advanced` per step, in order, then `promoted`; every check between them passed.
    advanced = [e for e in data["events"] if e["kind"] == "advanced"]
    assert [e["weight"] for e in advanced] == STEPS
    assert kinds(data)[-1] == "promoted"
    verdicts = [e["verdict"] for e in checks(data)]
    assert verdicts.count("pass") == len(STEPS), verdicts  # thin holds are allowed, no fails
    assert set(verdicts) <= {"pass", "thin"}, verdicts
    for check in checks(data):
        if check["verdict"] == "pass":
            figures = check["figures"]
            assert figures["cluster"] == CANARY and figures["requests"] >= 10
            assert figures["errors_5xx"] == 0 and figures["p99_ms"] <= 1000

    # Each weight change is a normal revision, authored by the rollout, with those weights.
    async with stack.admin_client() as admin:
        for event in [*advanced, data["events"][-1]]:
            r = await admin.get(f"/api/v1/revisions/{event['revision']}")
            revision = r.json()
            assert revision["author"] == f"rollout:{started['id']}"
            splits = {
                s["backend"]: s["weight"] for s in revision["state"]["models"][model]["splits"]
            }
            if event["kind"] == "advanced":
                assert splits == {STABLE: 100 - event["weight"], CANARY: event["weight"]}
            else:
                assert splits == {CANARY: 100}

    # The clients saw the canary's share grow, everything answered, and now only the canary.
    outcomes = traffic.outcomes()
    assert {s for _, s in outcomes} == {200}, outcomes
    assert outcomes[(CANARY, 200)] > 0 and outcomes[(STABLE, 200)] > 0
    tail = traffic.outcomes(since=after_promotion)
    assert set(tail) == {(CANARY, 200)}, tail


async def test_a_canary_with_20_percent_5xx_is_rolled_back_within_two_intervals(
    stack: Stack, healthy: dict[str, ControllableBackend]
) -> None:
    model, interval = "ro-errors", 5.0
    await add_model(stack, model)
    canary = healthy[CANARY]
    await canary.control(error_rate=0.2)
    async with Traffic(stack, model).running() as traffic:
        began = time.monotonic()
        started = await start_rollout(
            stack,
            model,
            steps=STEPS,
            interval_s=interval,
            gates={"min_success_rate": 0.99, "min_requests": 10, "max_failed_checks": 1},
        )
        data = await wait_rollout(stack, started["id"], ended, timeout=2 * interval + 10)
        took = time.monotonic() - began
        await asyncio.sleep(1.0)  # the rollback's route push reaches Envoy
        after_rollback = time.monotonic()
        await asyncio.sleep(1.5)

    assert data["status"] == "rolled_back", data
    assert data["weight"] == 0 and data["failed_checks"] == 2
    # max_failed_checks 1: the first failed check holds, the second rolls back; the first
    # check comes one interval after the start, so two intervals plus the check's own time.
    verdicts = [e["verdict"] for e in checks(data)]
    assert verdicts == ["fail", "fail"], verdicts
    assert took <= 2 * interval + 2.0, took
    for check in checks(data):
        assert check["figures"]["errors_5xx"] > 0
        assert check["figures"]["success_rate"] < 0.99
    assert kinds(data)[-1] == "rolled_back"
    assert await model_splits(stack, model) == {STABLE: 100, CANARY: 0}

    outcomes = traffic.outcomes()
    stable_all = sum(n for (backend, _), n in outcomes.items() if backend == STABLE)
    stable_ok = outcomes[(STABLE, 200)]
    assert stable_all > 200, outcomes
    assert stable_ok / stable_all >= 0.999, outcomes
    assert set(outcomes) <= {(STABLE, 200), (CANARY, 200), (CANARY, 500)}, outcomes
    # The canary's 500s reached the client as 500s: Envoy's retry_on (gateway-error,
    # connect-failure, refused-stream) does not retry a plain 500, so none was hidden by a
    # retry; the backend served exactly what the clients saw, once each.
    served = await canary.counts()
    seen_500 = outcomes[(CANARY, 500)]
    assert served["errors_5xx"] == seen_500 > 0, (served, outcomes)
    assert served["requests"] == outcomes[(CANARY, 200)] + seen_500, (served, outcomes)
    # After the rollback, all traffic is back on stable.
    tail = traffic.outcomes(since=after_rollback)
    assert set(tail) == {(STABLE, 200)}, tail


async def test_a_canary_whose_p99_exceeds_the_gate_is_rolled_back(
    stack: Stack, healthy: dict[str, ControllableBackend]
) -> None:
    model, interval = "ro-slow", 5.0
    await add_model(stack, model)
    await healthy[CANARY].control(latency_ms=300)
    async with Traffic(stack, model).running() as traffic:
        started = await start_rollout(
            stack,
            model,
            steps=[10, 50, 100],
            interval_s=interval,
            gates={"min_success_rate": 0.99, "max_p99_ms": 150, "min_requests": 5},
        )
        data = await wait_rollout(stack, started["id"], ended, timeout=3 * interval + 10)

    assert data["status"] == "rolled_back", data
    assert data["weight"] == 0
    fails = [e for e in checks(data) if e["verdict"] == "fail"]
    assert len(fails) == 2, checks(data)
    for check in fails:
        figures = check["figures"]
        assert figures["errors_5xx"] == 0  # only latency failed it
        assert figures["p99_ms"] > 150 and figures["p50_ms"] >= 250, figures
        assert "p99" in check["message"]
    assert await model_splits(stack, model) == {STABLE: 100, CANARY: 0}
    assert {s for _, s in traffic.outcomes()} == {200}


async def test_thin_traffic_holds_rather_than_advancing(
    stack: Stack, healthy: dict[str, ControllableBackend]
) -> None:
    model, interval = "ro-thin", 4.0
    await add_model(stack, model)
    started = await start_rollout(
        stack, model, steps=[20, 100], interval_s=interval, gates={"min_requests": 20}
    )
    rollout_id = started["id"]

    # No client traffic for two checks: each is `thin`, and the weight stays put.
    data = await wait_rollout(stack, rollout_id, lambda d: len(checks(d)) >= 2, 3 * interval)
    assert [e["verdict"] for e in checks(data)] == ["thin", "thin"]
    assert "needed to judge" in checks(data)[0]["message"]
    assert (data["status"], data["weight"], data["step_index"]) == ("running", 20, 0)
    assert data["failed_checks"] == 0
    assert kinds(data).count("advanced") == 1  # only the first step
    # A trickle (~4 canary requests an interval) is still too thin to judge.
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=10) as client:
        deadline = time.monotonic() + 2 * interval
        while time.monotonic() < deadline:
            r = await client.get("/v1/audio/voices", params={"model": model})
            assert r.status_code == 200
            await asyncio.sleep(0.2)
    data = await get_rollout(stack, rollout_id)
    assert len(checks(data)) >= 3
    assert all(e["verdict"] == "thin" for e in checks(data)), checks(data)
    trickle = [e["figures"]["requests"] for e in checks(data)[2:]]
    assert any(0 < n < 20 for n in trickle), trickle
    assert (data["status"], data["weight"]) == ("running", 20)
    assert await model_splits(stack, model) == {STABLE: 80, CANARY: 20}

    # While it is active, the model's splits are the rollout's: an admin write gets 409.
    async with stack.admin_client() as admin:
        r = await admin.put(
            f"/api/v1/models/{model}/splits", json={"splits": [{"backend": STABLE, "weight": 100}]}
        )
        assert r.status_code == 409, r.text
        assert f"rollout {rollout_id}" in r.json()["error"]["message"]
        r = await admin.post(f"/api/v1/rollouts/{rollout_id}/abort", headers={"X-Author": "e2e"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["weight"]) == ("aborted", 0)
    assert await model_splits(stack, model) == {STABLE: 100, CANARY: 0}


async def test_a_control_plane_sigkill_mid_rollout_resumes_at_the_same_step(
    stack: Stack, healthy: dict[str, ControllableBackend]
) -> None:
    model, interval = "ro-restart", 6.0
    await add_model(stack, model)
    async with Traffic(stack, model).running() as traffic:
        started = await start_rollout(
            stack, model, steps=STEPS, interval_s=interval, gates={"min_requests": 10}
        )
        rollout_id = started["id"]
        before = await wait_rollout(stack, rollout_id, lambda d: d["step_index"] >= 1, 3 * interval)
        assert (before["status"], before["weight"]) == ("running", 25)
        async with stack.admin_client() as admin:
            head_before = (await admin.get("/api/v1/revisions", params={"limit": 1})).json()

        await asyncio.sleep(1.0)  # mid-interval
        stack.kill("control-plane", signal.SIGKILL)
        await stack.children["control-plane"].process.wait()  # type: ignore[union-attr]
        await stack.start_control_plane()

        # Right after the restart: the same step, weight, schedule and revision.
        after = await get_rollout(stack, rollout_id)
        assert (after["status"], after["step_index"], after["weight"]) == ("running", 1, 25)
        assert after["next_check_at"] == before["next_check_at"]
        assert kinds(after)[-1] == "recovered"
        assert "step 2/4 (25%)" in after["events"][-1]["message"]
        assert await model_splits(stack, model) == {STABLE: 75, CANARY: 25}
        async with stack.admin_client() as admin:
            head_after = (await admin.get("/api/v1/revisions", params={"limit": 1})).json()
        assert head_after["head"] == head_before["head"]  # nothing rewritten on recovery
        await stack.wait_converged()

        # And it carries on from there to the end.
        data = await wait_rollout(stack, rollout_id, ended, timeout=4 * interval + 15)

    assert data["status"] == "promoted", data
    assert [e["weight"] for e in data["events"] if e["kind"] == "advanced"] == STEPS
    assert await model_splits(stack, model) == {CANARY: 100}
    # Envoy kept serving while its control plane was down.
    assert {s for _, s in traffic.outcomes()} == {200}
