"""Every /metrics endpoint of a running stack: promtool accepts it, the dashboard names exist.

Starts the stack the way tests/e2e/stack.py does (real Envoy, filter, workers, Redis).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.e2e.stack import TOKEN, Stack
from tests.unit.test_deploy_grafana import dashboard, exposed_names, expressions, metric_names

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
OURS = ("control-plane", "filter", "worker-espeak", "worker-cosyvoice3")
# Envoy's /stats/prometheus parses but fails promtool's lint: no HELP lines, counters
# without `_total`, `_ms` units. Envoy's naming, not ours; anything else is a failure.
ENVOY_LINT = ("no help text", 'counter metrics should have "_total" suffix',
              "metric names should not contain abbreviated units",
              'use base unit "seconds" instead of')  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scrapes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    stack = Stack(Path(tmp_path_factory.mktemp("stack")))
    try:
        await stack.start_all()
        s = stack.settings
        async with httpx.AsyncClient(timeout=30) as client:
            # Traffic first, so labelled series (cache hit and miss, both backends) exist.
            for model in ("espeak", "espeak", "cosyvoice3"):
                body = {"model": model, "input": "Metrics, please.", "voice": "alloy"}
                r = await client.post(f"{stack.gateway}/v1/audio/speech", json=body)
                assert r.status_code == 200, r.text
            urls = {
                "control-plane": f"{stack.admin}/metrics",
                "filter": f"http://127.0.0.1:{s.ext_proc_metrics_port}/metrics",
                "worker-espeak": f"http://127.0.0.1:{s.espeak_port}/metrics",
                "worker-cosyvoice3": f"http://127.0.0.1:{s.cosyvoice3_port}/metrics",
                "envoy": f"http://127.0.0.1:{s.envoy_admin_port}/stats/prometheus",
            }
            auth = {"Authorization": f"Bearer {TOKEN}"}
            out = {}
            for name, url in urls.items():
                r = await client.get(url, headers=auth if name == "control-plane" else {})
                assert r.status_code == 200, (name, r.status_code)
                out[name] = r.text
    except BaseException:
        print(stack.logs())
        await stack.stop()
        raise
    yield out
    await stack.stop()


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (make setup installs Debian's prometheus)")
    return subprocess.run(
        [binary, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("component", OURS)
async def test_our_metrics_pass_promtool(component: str, scrapes: dict[str, str]) -> None:
    out = _promtool(scrapes[component])
    assert out.returncode == 0, f"{component}: {out.stdout}{out.stderr}"


async def test_envoy_metrics_parse_and_only_fail_known_lint(scrapes: dict[str, str]) -> None:
    out = _promtool(scrapes["envoy"])
    # promtool: 1 = parse error, 3 = lint problems only.
    assert out.returncode in (0, 3), out.stdout + out.stderr
    problems = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    unknown = [p for p in problems if not any(k in p for k in ENVOY_LINT)]
    assert unknown == []


async def test_every_dashboard_metric_exists_in_the_scrape(scrapes: dict[str, str]) -> None:
    scraped = set().union(*map(exposed_names, scrapes.values()))
    wanted = set().union(*map(metric_names, expressions(dashboard())))
    assert wanted, "the dashboard queries nothing"
    assert sorted(wanted - scraped) == []


async def test_the_new_labels_and_gauges_carry_the_traffic(scrapes: dict[str, str]) -> None:
    cp, filt = scrapes["control-plane"], scrapes["filter"]
    assert 'ttsgw_route_weight{backend="espeak",model="espeak"} 100.0' in cp
    assert "ttsgw_xds_connected_envoys 1.0" in cp
    assert 'ttsgw_xds_push_latency_seconds_count{type="rds"}' in cp
    # Two espeak requests and one cosyvoice3, anonymous: counted per model, class "none".
    assert 'ttsgw_filter_requests_total{class="none",model="espeak",outcome="routed"} 2.0' in filt
    routed = '{class="none",model="cosyvoice3",outcome="routed"} 1.0'
    assert "ttsgw_filter_requests_total" + routed in filt
