"""Sticky A/B for real: two Envoys, the filter, the control plane, two controllable backends.

A model splits 70/30 over variants A and B, sticky by `x-user-id`. Each of 1,000 users
must hear one variant on all of its 5 requests, whichever of the two Envoys (sharing the
listener port through SO_REUSEPORT; a new connection per request) answers; the users
split 70/30 within ±3 points; requests without the header still reach both variants.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.controllable import ControllableBackend, start_and_register
from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_gateway import wait_routable
from tests.fakes.controllable_backend import NAME_HEADER

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MODEL = "ab-voice"
USERS = 1_000
REQUESTS_PER_USER = 5
# Under the default circuit breaker (10 pending / 20 requests) even before it was raised.
CONCURRENCY = 8
ENVOYS = ("ttsgw-envoy-1", "ttsgw-envoy-2")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """No TTS workers: the seeded espeak/cosyvoice3 backends stay unhealthy and unused."""
    state_dir = Path(tmp_path_factory.mktemp("ab-stack"))
    async with running_stack(state_dir, workers=False, envoys=ENVOYS) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def variants(stack: Stack) -> dict[str, ControllableBackend]:
    a, b = await asyncio.gather(
        start_and_register(stack, "variant-a"), start_and_register(stack, "variant-b")
    )
    model = {
        "splits": [{"backend": a.name, "weight": 70}, {"backend": b.name, "weight": 30}],
        "sticky_header": "x-user-id",
    }
    async with stack.admin_client() as admin:
        response = await admin.put(f"/api/v1/models/{MODEL}?wait=acked", json=model)
        assert response.status_code == 200, response.text
        shown = (await admin.get(f"/api/v1/models/{MODEL}")).json()
    assert shown["sticky_header"] == "x-user-id"
    await stack.wait_converged(nodes=2)
    await wait_routable(stack, MODEL)
    return {"a": a, "b": b}


async def pick_variants(
    stack: Stack, users: Iterable[str | None], rounds: int
) -> list[tuple[str | None, str]]:
    """(user, x-tts-backend) for `rounds` passes over `users`, CONCURRENCY at a time.

    Passes, not one user's requests back to back, so a user's requests are far apart and
    each opens its own connection to whichever Envoy the kernel hands it to.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for _ in range(rounds):
        for user in users:
            queue.put_nowait(user)
    picks: list[tuple[str | None, str]] = []
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            user = queue.get_nowait()
            headers = {} if user is None else {"x-user-id": user}
            r = await client.get("/v1/audio/voices", params={"model": MODEL}, headers=headers)
            if r.status_code != 200 or r.headers[NAME_HEADER] != r.headers["x-tts-backend"]:
                failures.append(f"{user}: {r.status_code} {dict(r.headers)} {r.text[:200]}")
            picks.append((user, r.headers.get("x-tts-backend", "")))

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=stack.gateway, timeout=10, limits=limits, trust_env=False
    ) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    assert not failures, failures[:5]
    return picks


async def served(stack: Stack, backend: str, node_id: str) -> int:
    return await stack.envoy_stat(f"cluster.{backend}.upstream_rq_total", node_id)


async def test_every_user_keeps_its_variant_and_users_split_by_the_weights(
    stack: Stack, variants: dict[str, ControllableBackend]
) -> None:
    a, b = variants["a"], variants["b"]
    await asyncio.gather(a.control(reset=True), b.control(reset=True))
    before = {(n, v.name): await served(stack, v.name, n) for n in ENVOYS for v in (a, b)}

    users = [f"user-{i:04d}" for i in range(USERS)]
    picks = await pick_variants(stack, users, REQUESTS_PER_USER)

    seen: dict[str, set[str]] = {}
    for user, backend in picks:
        assert user is not None
        seen.setdefault(user, set()).add(backend)
    assert len(seen) == USERS
    switched = {u: s for u, s in seen.items() if len(s) != 1}
    assert not switched, f"{len(switched)} users heard both variants: {list(switched)[:5]}"
    per_variant = Counter(next(iter(s)) for s in seen.values())
    share_a = per_variant[a.name] / USERS
    assert abs(share_a - 0.70) <= 0.03, per_variant
    assert per_variant[a.name] + per_variant[b.name] == USERS

    # The backends themselves saw exactly what the x-tts-backend headers claim.
    counts = {v.name: (await v.counts())["by_path"]["/v1/audio/voices"] for v in (a, b)}
    assert counts[a.name] == {"200": per_variant[a.name] * REQUESTS_PER_USER}
    assert counts[b.name] == {"200": per_variant[b.name] * REQUESTS_PER_USER}
    # Both proxies of the fleet routed users, and they agreed on every user.
    for node in ENVOYS:
        grew = [await served(stack, v.name, node) - before[(node, v.name)] for v in (a, b)]
        assert sum(grew) > USERS // 10, (node, grew)


async def test_requests_without_the_header_fall_back_to_random(
    stack: Stack, variants: dict[str, ControllableBackend]
) -> None:
    picks = await pick_variants(stack, [None], 300)
    per_variant = Counter(backend for _, backend in picks)
    assert sum(per_variant.values()) == 300
    assert per_variant[variants["a"].name] > 150, per_variant  # ~210 at 70/30
    assert per_variant[variants["b"].name] > 40, per_variant  # ~90 at 70/30


async def test_growing_b_moves_users_only_from_a_to_b_in_a_route_only_push(
    stack: Stack, variants: dict[str, ControllableBackend]
) -> None:
    a, b = variants["a"], variants["b"]
    users = [f"user-{i:04d}" for i in range(USERS)]
    before = dict(await pick_variants(stack, users, 1))
    fleet_before = await stack.fleet()

    splits = [{"backend": a.name, "weight": 50}, {"backend": b.name, "weight": 50}]
    async with stack.admin_client() as admin:
        response = await admin.put(
            f"/api/v1/models/{MODEL}/splits?wait=acked", json={"splits": splits}
        )
        assert response.status_code == 200, response.text
        assert (await admin.get(f"/api/v1/models/{MODEL}")).json()["sticky_header"] == "x-user-id"
    fleet_after = await stack.wait_converged(nodes=2)
    changed = {t for t, v in fleet_after["versions"].items() if fleet_before["versions"][t] != v}
    assert changed == {"rds"}

    after = dict(await pick_variants(stack, users, 1))
    moves = Counter((before[u], after[u]) for u in users)
    # hash % total_weight over [A | B]: widening B takes users from A's end, never gives back.
    assert moves[(b.name, a.name)] == 0, moves
    assert abs(moves[(a.name, b.name)] / USERS - 0.20) <= 0.03, moves
    assert abs(sum(1 for u in users if after[u] == b.name) / USERS - 0.50) <= 0.03, moves


async def test_a_header_clients_cannot_send_is_a_422_naming_the_field(
    stack: Stack, variants: dict[str, ControllableBackend]
) -> None:
    async with stack.admin_client() as admin:
        head = (await admin.get("/api/v1/revisions", params={"limit": 1})).json()["head"]
        model = (await admin.get(f"/api/v1/models/{MODEL}")).json()
        model.pop("name")
        for header in ("x-tts-model", "X-User-Id"):
            r = await admin.put(f"/api/v1/models/{MODEL}", json={**model, "sticky_header": header})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["field"] == "sticky_header"
        assert (await admin.get("/api/v1/revisions", params={"limit": 1})).json()["head"] == head
