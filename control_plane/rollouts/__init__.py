"""Canary rollouts: a model's traffic moved step by step to a new backend, gated by live metrics.

    model        RolloutSpec (what ops start), Rollout (state), RolloutEvent (history)
    store        SQLite tables beside the revisions, WAL, safe across SIGKILL
    verdict      one interval's figures against the gates: pass | fail | thin
    weights      the model's splits at a canary weight, and after promotion
    transitions  each state change, persisted with its event; weights as revisions
    controller   the asyncio loop, manual actions, resume after restart
    guard        409 for writes that would fight an active rollout
    api          /api/v1/rollouts

`install_rollouts` is the one wiring call: the lead's main calls it once the control
plane has started, then `await controller.start()` and, on shutdown, `stop()`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI

from control_plane.api.deps import require_token
from control_plane.metrics.source import MetricsSource
from control_plane.rollouts.api import router
from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.store import SQLiteRolloutStore
from control_plane.service import ControlPlane

API_PREFIX = "/api/v1"

__all__ = ["RolloutController", "install_rollouts"]


def install_rollouts(
    app: FastAPI, control_plane: ControlPlane, metrics: MetricsSource, db_path: Path
) -> RolloutController:
    """Add the router behind the admin token and the write guard; the caller starts the loop."""
    controller = RolloutController(control_plane, metrics, SQLiteRolloutStore(db_path))
    control_plane.add_guard(controller.guard)
    app.state.rollouts = controller
    app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(require_token)])
    return controller
