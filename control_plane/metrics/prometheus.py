"""`MetricsSource` over Prometheus' HTTP API, for fleets whose Prometheus already scrapes Envoy.

The queries are Flagger's, over Envoy's own /stats/prometheus names: request classes from
`envoy_cluster_upstream_rq_xx` and latency quantiles from `envoy_cluster_upstream_rq_time_bucket`,
both labelled `envoy_cluster_name`. Envoy's tag extraction splits cluster names at dots, so
a backend whose name contains a dot is not visible to this source (the Envoy source sees it).
"""

from __future__ import annotations

import asyncio
import math

import httpx

from control_plane.metrics.errors import MetricsUnavailableError
from control_plane.metrics.source import WindowStats

QUANTILES = (0.50, 0.95, 0.99)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _range(window_s: float) -> str:
    return f"{max(1, round(window_s * 1000))}ms"


def queries(cluster: str, window_s: float) -> dict[str, str]:
    """The PromQL for one cluster and window, by the WindowStats field it fills."""
    sel = f'envoy_cluster_name="{_label(cluster)}"'
    w = _range(window_s)
    out = {
        "requests": f"sum(increase(envoy_cluster_upstream_rq_xx{{{sel}}}[{w}]))",
        "errors_5xx": (
            f'sum(increase(envoy_cluster_upstream_rq_xx{{{sel},envoy_response_code_class="5"}}'
            f"[{w}]))"
        ),
    }
    for q in QUANTILES:
        out[f"p{round(q * 100)}_ms"] = (
            f"histogram_quantile({q}, sum by (le) "
            f"(rate(envoy_cluster_upstream_rq_time_bucket{{{sel}}}[{w}])))"
        )
    return out


class PrometheusMetricsSource:
    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, transport=transport)

    async def cluster_stats(self, cluster: str, window_s: float) -> WindowStats:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        wanted = queries(cluster, window_s)
        values = await asyncio.gather(*(self._scalar(q) for q in wanted.values()))
        got = dict(zip(wanted, values, strict=True))
        return WindowStats(
            cluster=cluster,
            window_s=window_s,
            requests=round(got["requests"] or 0.0),
            errors_5xx=round(got["errors_5xx"] or 0.0),
            p50_ms=got["p50_ms"],
            p95_ms=got["p95_ms"],
            p99_ms=got["p99_ms"],
        )

    async def _scalar(self, query: str) -> float | None:
        """The single value of an instant query; None when it has no series or is NaN."""
        try:
            response = await self._client.get("/api/v1/query", params={"query": query})
        except httpx.HTTPError as exc:
            message = f"Prometheus at {self.url} is unreachable: {exc}"
            raise MetricsUnavailableError(message) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            raise MetricsUnavailableError(
                f"Prometheus at {self.url} refused {query!r}: "
                f"{body.get('error') or response.status_code}"
            )
        result = body.get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) or math.isinf(value) else value

    async def aclose(self) -> None:
        await self._client.aclose()
