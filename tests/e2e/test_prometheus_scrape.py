"""A real Prometheus scrapes the whole running stack with deploy/prometheus/prometheus.yml's jobs.

The stack is the conftest's (control plane, filter, both workers, Redis, one real Envoy).
The scrape config is the deployed one with only the targets, the token file and the
interval changed, and the PromQL asked is the Grafana dashboard's own, so what is tested
here is what an operator's Prometheus and dashboard would see.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from tests.e2e.stack import TOKEN, Stack
from tests.prometheus_server import running_prometheus
from tests.unit.test_deploy_grafana import dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parents[2]
# Grafana's macros, filled in the way Grafana would for a 1 s scrape interval.
MACROS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "1s"}


def dashboard_expr(title: str, ref: str = "A") -> str:
    [panel] = [p for p in dashboard()["panels"] if p["title"] == title]
    [target] = [t for t in panel["targets"] if t["refId"] == ref]
    expr: str = target["expr"]
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def scrape_config(stack: Stack, token_file: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml pointed at this stack's ports, scraping every second."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    s = stack.settings
    local = {
        "ttsgw-control-plane": [stack.admin.removeprefix("http://")],
        "ttsgw-gateway-filter": [f"127.0.0.1:{s.ext_proc_metrics_port}"],
        "ttsgw-workers": [f"127.0.0.1:{s.espeak_port}", f"127.0.0.1:{s.cosyvoice3_port}"],
        "envoy": [f"127.0.0.1:{port}" for port in stack.envoy_admin_ports.values()],
    }
    jobs = config["scrape_configs"]
    # A job added to the deployed config must be added here too, or it goes untested.
    assert sorted(job["job_name"] for job in jobs) == sorted(local)
    for job in jobs:
        job["static_configs"] = [{"targets": local[job["job_name"]]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    return dict(config)


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    work = Path(tmp_path_factory.mktemp("prometheus"))
    token = work / "admin-token"
    token.write_text(TOKEN)
    with running_prometheus(work, yaml.safe_dump(scrape_config(stack, token))) as url:
        yield url


class PromClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def targets(self) -> list[dict[str, Any]]:
        try:
            r = await self.client.get("/api/v1/targets", params={"state": "active"})
        except httpx.HTTPError:
            return []  # not listening yet
        return list(r.json()["data"]["activeTargets"]) if r.status_code == 200 else []

    async def query(self, expr: str) -> list[dict[str, Any]]:
        r = await self.client.get("/api/v1/query", params={"query": expr})
        assert r.status_code == 200, (expr, r.text)
        body = r.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])


async def speak(stack: Stack, texts: list[tuple[str, str]]) -> list[str]:
    """Speech requests in order; returns each answer's x-tts-cache header."""
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        caches = []
        for model, text in texts:
            body = {"model": model, "input": text, "voice": "alloy"}
            r = await client.post("/v1/audio/speech", json=body)
            assert r.status_code == 200, r.text
            caches.append(r.headers.get("x-tts-cache", ""))
        return caches


async def test_prometheus_scrapes_every_component_and_the_dashboard_queries_answer(
    stack: Stack, prometheus: str
) -> None:
    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as http:
        prom = PromClient(http)

        async def all_up() -> list[dict[str, Any]] | None:
            targets = await prom.targets()
            # Five targets: control plane, filter, two workers, one Envoy.
            if len(targets) == 5 and all(t["health"] == "up" for t in targets):
                return targets
            return None

        try:
            targets = await until(all_up, "every target up")
        except AssertionError:
            print(await prom.targets())
            raise
        assert {t["labels"]["job"] for t in targets} == {
            "ttsgw-control-plane",
            "ttsgw-gateway-filter",
            "ttsgw-workers",
            "envoy",
        }

        # rate() counts from a series' first sample: let the cache series exist and be
        # scraped before the traffic the ratio is measured on.
        assert await speak(stack, [("espeak", "Scrape me."), ("espeak", "Scrape me.")]) == [
            "miss",
            "hit",
        ]
        await asyncio.sleep(3)
        caches = await speak(stack, [("espeak", "Scrape me."), ("espeak", "Scrape me too.")])
        assert caches == ["hit", "miss"]

        ratio_expr = dashboard_expr("Cache hit ratio")

        async def hit_ratio() -> float | None:
            result = await prom.query(ratio_expr)
            if not result:
                return None
            value = float(result[0]["value"][1])
            # 0/0 is NaN until the rates see the new samples; wait for a real ratio.
            return value if math.isfinite(value) and 0 < value < 1 else None

        ratio = await until(hit_ratio, f"a cache hit ratio from {ratio_expr}")
        assert 0 < ratio < 1

        # The canary panel's share per backend, from the control plane's weights.
        shares = await prom.query(
            dashboard_expr("Canary weight over time (traffic share per backend)")
        )
        by_route = {(s["metric"]["model"], s["metric"]["backend"]): s["value"][1] for s in shares}
        assert by_route[("espeak", "espeak")] == "100"

        # A route change is pushed to the Envoy: the push latency histogram counts it.
        async with stack.admin_client() as admin:
            r = await admin.put(
                "/api/v1/models/espeak-b?wait=acked",
                json={"splits": [{"backend": "espeak", "weight": 100}]},
            )
            assert r.status_code == 200, r.text
            assert r.json()["acked"] is True

        async def pushed() -> bool:
            result = await prom.query('sum(ttsgw_xds_push_latency_seconds_count{type="rds"})')
            return bool(result) and float(result[0]["value"][1]) >= 1

        await until(pushed, "an RDS push latency sample")

        # Traffic per model and class, as the filter counts it.
        per_class = await prom.query(dashboard_expr("Gateway filter requests per model and class"))
        labels = {(s["metric"]["model"], s["metric"]["class"]) for s in per_class}
        assert ("espeak", "none") in labels
