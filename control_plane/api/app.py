"""The admin REST API (FastAPI): every route but /healthz and the UI page needs a bearer token.

The admin token may call everything; the dataplane token only the data-path reads
(``resources.data_path`` and ``queue.router``), see ttsgw_contract/roles.py.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import Depends, FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from control_plane.api import cache, priority, queue, resources, stats
from control_plane.api.deps import ControlPlaneDep, require_admin, require_dataplane
from control_plane.api.errors import install_error_handlers
from control_plane.metrics.source import MetricsSource
from control_plane.queue_status import QueuePoller
from control_plane.service import ControlPlane
from control_plane.tokens import Tokens
from ttsgw_contract.cache import CacheStore

API_PREFIX = "/api/v1"


def create_app(
    control_plane: ControlPlane,
    *,
    admin_token: str,
    dataplane_token: str | None = None,
    registry: CollectorRegistry,
    cache_store: CacheStore | None = None,
    metrics_source: MetricsSource | None = None,
    queue_poller: QueuePoller | None = None,
) -> FastAPI:
    auth = [Depends(require_admin)]
    app = FastAPI(
        title="ttsgw admin API",
        version="1",
        openapi_url=None,  # served below, behind the token like everything else
        docs_url=None,
        redoc_url=None,
    )
    app.state.control_plane = control_plane
    app.state.tokens = Tokens.of(admin_token, dataplane_token)
    app.state.cache_store = cache_store
    app.state.metrics_source = metrics_source
    app.state.queue_poller = queue_poller
    install_error_handlers(app)

    revision_gauge = Gauge(
        "ttsgw_revision", "Head revision number of the desired state", registry=registry
    )
    revision_gauge.set_function(lambda: control_plane.head.number)

    routers = (
        resources.backends,
        resources.models,
        resources.revisions,
        resources.system,
        cache.router,
        priority.router,
        stats.router,
    )
    for router in routers:
        app.include_router(router, prefix=API_PREFIX, dependencies=auth)
    for router in (resources.data_path, queue.router):
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(require_dataplane)])

    @app.get("/healthz", tags=["system"])
    async def healthz(cp: ControlPlaneDep) -> dict[str, object]:
        return {"status": "ok", "revision": cp.head.number}

    @app.get("/metrics", tags=["system"], dependencies=auth)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", tags=["system"], dependencies=auth, include_in_schema=False)
    async def openapi() -> dict[str, object]:
        return app.openapi()

    static = files("admin_ui") / "static"
    app.mount("/ui", StaticFiles(directory=str(static), html=True), name="ui")
    return app
