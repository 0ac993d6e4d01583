"""Admin endpoint for how busy the workers are: their queues summed per model (queue_status.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from control_plane.api.deps import ControlPlaneDep
from control_plane.errors import NotFoundError, QueueStatusUnavailableError
from control_plane.queue_status import QueuePoller
from ttsgw_contract.queue_status import QueueAggregate

# Polled by every filter with its dataplane token (app.py includes it as a data-path read).
router = APIRouter(prefix="/queue", tags=["queue"])


def _poller(request: Request) -> QueuePoller:
    poller: QueuePoller | None = getattr(request.app.state, "queue_poller", None)
    if poller is None:
        raise QueueStatusUnavailableError(
            "this control plane does not poll the workers' queues (no queue poller configured)"
        )
    return poller


@router.get("", summary="Queue depth, estimated wait, in-flight and a busy hint per model")
async def queue_status(
    request: Request,
    cp: ControlPlaneDep,
    model: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")] = None,
) -> QueueAggregate:
    poller = _poller(request)
    try:
        view = poller.view(model)
    except KeyError:
        raise NotFoundError(f"no model named '{model}'", field="model") from None
    return view.model_copy(update={"revision": cp.head.number})
