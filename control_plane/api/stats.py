"""Live traffic figures per backend and per model variant, from the configured metrics source."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from control_plane.api.collections import NamePath
from control_plane.api.deps import ControlPlaneDep
from control_plane.errors import NotFoundError
from control_plane.metrics.errors import MetricsUnavailableError
from control_plane.metrics.source import MetricsSource

router = APIRouter(tags=["stats"])

# The Envoy source keeps this much history (FleetWindow.retention_s in main.py).
MAX_WINDOW_S = 900.0


def _metrics_source(request: Request) -> MetricsSource:
    source: MetricsSource | None = getattr(request.app.state, "metrics_source", None)
    if source is None:
        raise MetricsUnavailableError("this control plane has no metrics source configured")
    return source


MetricsSourceDep = Annotated[MetricsSource, Depends(_metrics_source)]
WindowDep = Annotated[
    float, Query(gt=0, le=MAX_WINDOW_S, description="sliding window in seconds, ending now")
]


@router.get("/backends/{name}/stats")
async def backend_stats(
    name: NamePath, cp: ControlPlaneDep, metrics: MetricsSourceDep, window_s: WindowDep = 60.0
) -> dict[str, Any]:
    """Requests, 5xx, success rate and upstream latency quantiles, fleet-wide."""
    if name not in cp.head.state.backends:
        raise NotFoundError(f"no backend named '{name}'", field="name")
    stats = await metrics.cluster_stats(name, window_s)
    return {"backend": name, **stats.public()}


@router.get("/models/{name}/stats")
async def model_stats(
    name: NamePath, cp: ControlPlaneDep, metrics: MetricsSourceDep, window_s: WindowDep = 60.0
) -> dict[str, Any]:
    """The same figures per variant (split) of the model, beside its configured weights."""
    model = cp.head.state.models.get(name)
    if model is None:
        raise NotFoundError(f"no model named '{name}'", field="name")
    total_weight = sum(s.weight for s in model.splits)
    per_variant = await asyncio.gather(
        *(metrics.cluster_stats(s.backend, window_s) for s in model.splits)
    )
    variants = []
    for split, stats in zip(model.splits, per_variant, strict=True):
        variants.append(
            {
                "backend": split.backend,
                "weight": split.weight,
                "configured_share": split.weight / total_weight,
                **stats.public(),
            }
        )
    requests = sum(s.requests for s in per_variant)
    errors = sum(s.errors_5xx for s in per_variant)
    for variant, stats in zip(variants, per_variant, strict=True):
        # What the traffic actually did, to hold beside configured_share.
        variant["observed_share"] = stats.requests / requests if requests else None
    return {
        "model": name,
        "window_s": window_s,
        "revision": cp.head.number,
        "sticky_header": model.sticky_header,
        "requests": requests,
        "errors_5xx": errors,
        "success_rate": 1.0 - errors / requests if requests else None,
        "variants": variants,
    }
