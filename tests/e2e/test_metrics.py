"""Envoy's stats reach the control plane: the metrics_service sink, and Prometheus scraping Envoy.

A real stack (control plane, filter, workers, Envoy) plus a controllable backend that fails
a set share of requests; the admin API's stats endpoints must show that traffic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from control_plane.metrics.prometheus import PrometheusMetricsSource
from tests.e2e.controllable import ControllableBackend, start_and_register
from tests.e2e.stack import Stack
from tests.prometheus_server import running_prometheus

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def _speak(stack: Stack, model: str, count: int, tag: str) -> list[int]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        statuses = []
        for i in range(count):
            r = await client.post(
                "/v1/audio/speech",
                json={"model": model, "input": f"{tag} request {i}", "voice": "alloy"},
            )
            statuses.append(r.status_code)
        return statuses


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
    """Polls until `check` returns something truthy (flushes arrive every 2 s)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for metrics")
        await asyncio.sleep(0.25)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def flaky(stack: Stack) -> ControllableBackend:
    backend = await start_and_register(stack, "flaky")
    async with stack.admin_client() as admin:
        r = await admin.put(
            "/api/v1/models/flaky?wait=acked",
            json={"splits": [{"backend": "flaky", "weight": 100}], "cache_ttl_s": 0},
        )
        assert r.status_code == 200, r.text
    await backend.control(error_rate=0.25, latency_ms=40)
    return backend


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    work = Path(tmp_path_factory.mktemp("prometheus"))
    envoy_admin = stack.envoy_admin_ports["ttsgw-envoy-1"]
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: envoy\n"
        "    metrics_path: /stats/prometheus\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{envoy_admin}']}}]\n"
    )
    with running_prometheus(work, config) as url:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:

            async def scraped() -> bool:
                try:
                    r = await client.get("/api/v1/query", params={"query": 'up{job="envoy"}'})
                except httpx.HTTPError:
                    return False
                result = r.json()["data"]["result"] if r.status_code == 200 else []
                return bool(result) and result[0]["value"][1] == "1"

            await _until(scraped, timeout=30)
        yield url


async def test_backend_and_model_stats_from_the_metrics_service_sink(
    stack: Stack, flaky: ControllableBackend
) -> None:
    statuses = await _speak(stack, "flaky", 40, "sink")
    assert statuses.count(500) == 10 and statuses.count(200) == 30

    async with stack.admin_client() as admin:

        async def stats() -> dict[str, Any] | None:
            r = await admin.get("/api/v1/backends/flaky/stats", params={"window_s": 120})
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body if body["requests"] >= 40 else None

        body = await _until(stats)
        assert (body["requests"], body["errors_5xx"]) == (40, 10)
        assert body["success_rate"] == pytest.approx(0.75)
        # The backend sleeps 40 ms per request: the median upstream time is at least that.
        assert 40 <= body["p50_ms"] <= body["p95_ms"] <= body["p99_ms"] < 1000

        r = await admin.get("/api/v1/models/flaky/stats", params={"window_s": 120})
        model = r.json()
        (variant,) = model["variants"]
        assert variant["backend"] == "flaky" and variant["weight"] == 100
        assert (model["requests"], model["errors_5xx"]) == (40, 10)

        # The control plane counts the flushes it decoded.
        metrics = (await admin.get("/metrics")).text
        assert "ttsgw_metrics_flushes_total" in metrics


async def test_envoy_admin_stats_keep_what_ops_and_tests_read(stack: Stack) -> None:
    # The stats matcher trims Envoy's admin /stats too; these must survive it.
    assert await stack.envoy_stat("listener_manager.total_listeners_active") >= 1
    assert await stack.envoy_stat("cluster.flaky.upstream_rq_total") >= 40
    assert await stack.envoy_stat("cluster.flaky.upstream_rq_5xx") >= 10
    port = stack.envoy_admin_ports["ttsgw-envoy-1"]
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/stats")).text
    assert "cluster.flaky.upstream_cx_total" not in text  # cut: grows with every backend


async def test_prometheus_source_scraping_envoy(
    stack: Stack, flaky: ControllableBackend, prometheus: str
) -> None:
    # Prometheus' increase() only counts from a series' first sample, so let every series
    # this test reads exist (and be scraped) before the measured traffic.
    await _speak(stack, "flaky", 4, "warm-up")
    await asyncio.sleep(3)
    before = await stack.envoy_stat("cluster.flaky.upstream_rq_total")
    statuses = await _speak(stack, "flaky", 40, "prometheus")
    errors = statuses.count(500)
    assert await stack.envoy_stat("cluster.flaky.upstream_rq_total") == before + 40
    await asyncio.sleep(3)  # a few scrapes after the last request

    source = PrometheusMetricsSource(prometheus)
    try:
        wide = await source.cluster_stats("flaky", 600.0)
        other = await source.cluster_stats("espeak", 600.0)
    finally:
        await source.aclose()
    assert other.requests == 0 and other.p99_ms is None  # no traffic, no series: not an error
    # increase() extrapolates to the window's edges: close to, not exactly, what happened.
    assert 40 <= wide.requests <= 50, wide
    assert errors <= wide.errors_5xx <= errors + 4, wide
    assert wide.p50_ms is not None and 40 <= wide.p50_ms < 1000
    assert wide.p99_ms is not None and wide.p50_ms <= wide.p99_ms
