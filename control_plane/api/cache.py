"""Admin endpoints for the gateway's response cache: per-model stats and purge."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from control_plane.errors import ControlPlaneError, StoreError
from ttsgw_contract.cache import CacheStore, CacheUnavailable

router = APIRouter(prefix="/cache", tags=["cache"])


class CacheNotConfiguredError(ControlPlaneError):
    status = 503
    code = "cache_not_configured"


def _store(request: Request) -> CacheStore:
    store: CacheStore | None = request.app.state.cache_store
    if store is None:
        raise CacheNotConfiguredError(
            "the response cache is not configured: start the control plane with "
            "TTSGW_REDIS_URL (ttsgw up does this for its embedded Redis)"
        )
    return store


@router.get("", summary="Hits, misses, bypasses, bytes served and hit ratio per model")
async def cache_stats(request: Request) -> dict[str, Any]:
    try:
        models = await _store(request).stats()
    except CacheUnavailable as exc:
        raise StoreError(f"Redis did not answer: {exc}") from exc
    totals = {
        k: sum(m.get(k, 0) for m in models.values())
        for k in ("hits", "misses", "bypasses", "bytes_served")
    }
    looked_up = totals["hits"] + totals["misses"]
    totals["hit_ratio"] = totals["hits"] / looked_up if looked_up else 0.0
    return {"models": models, "total": totals}


@router.delete("", summary="Purge the whole cache, or one model's entries")
async def cache_purge(
    request: Request,
    model: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")] = None,
) -> dict[str, Any]:
    try:
        deleted = await _store(request).purge(model)
    except CacheUnavailable as exc:
        raise StoreError(f"Redis did not answer: {exc}") from exc
    return {"purged": deleted, "model": model}
