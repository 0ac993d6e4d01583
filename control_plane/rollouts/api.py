"""The rollouts router, `/api/v1/rollouts`: start, list, show, pause, resume, promote, abort."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from control_plane.rollouts.controller import RolloutController
from control_plane.rollouts.model import RolloutSpec, Status


def _controller(request: Request) -> RolloutController:
    controller: RolloutController = request.app.state.rollouts
    return controller


def _author(
    x_author: Annotated[str | None, Header(alias="X-Author", max_length=200)] = None,
) -> str:
    return x_author or "admin"


ControllerDep = Annotated[RolloutController, Depends(_controller)]
AuthorDep = Annotated[str, Depends(_author)]

router = APIRouter(prefix="/rollouts", tags=["rollouts"])


@router.post("", status_code=201, summary="Start a canary rollout of a model")
async def start_rollout(
    body: RolloutSpec, controller: ControllerDep, author: AuthorDep
) -> dict[str, Any]:
    rollout = await controller.start_rollout(body, author=author)
    return controller.status(rollout.id)


@router.get("", summary="List rollouts, newest first")
async def list_rollouts(
    controller: ControllerDep,
    model: Annotated[str | None, Query(max_length=63)] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    rollouts = controller.find(model=model, status=status, limit=limit)
    return {"rollouts": [r.public() for r in rollouts]}


@router.get("/{rollout_id}", summary="A rollout: status, weight, gates, last figures, events")
async def get_rollout(
    rollout_id: int,
    controller: ControllerDep,
    events: Annotated[int, Query(ge=0, le=1000, description="how many recent events")] = 50,
) -> dict[str, Any]:
    return controller.status(rollout_id, events=events)


@router.get("/{rollout_id}/events", summary="A rollout's history, oldest first")
async def get_events(
    rollout_id: int,
    controller: ControllerDep,
    after: Annotated[int | None, Query(ge=0, description="only events after this id")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    events = controller.events(rollout_id, after=after, limit=limit)
    return {"rollout": rollout_id, "events": [e.public() for e in events]}


@router.post("/{rollout_id}/pause", summary="Hold the current weight; no more checks")
async def pause(rollout_id: int, controller: ControllerDep, author: AuthorDep) -> dict[str, Any]:
    await controller.pause(rollout_id, author=author)
    return controller.status(rollout_id)


@router.post("/{rollout_id}/resume", summary="Resume checks at the current weight")
async def resume(rollout_id: int, controller: ControllerDep, author: AuthorDep) -> dict[str, Any]:
    await controller.resume(rollout_id, author=author)
    return controller.status(rollout_id)


@router.post("/{rollout_id}/promote", summary="Make the canary the stable backend now")
async def promote(rollout_id: int, controller: ControllerDep, author: AuthorDep) -> dict[str, Any]:
    await controller.promote(rollout_id, author=author)
    return controller.status(rollout_id)


@router.post("/{rollout_id}/abort", summary="Send all traffic back to the stable backend")
async def abort(rollout_id: int, controller: ControllerDep, author: AuthorDep) -> dict[str, Any]:
    await controller.abort(rollout_id, author=author)
    return controller.status(rollout_id)
