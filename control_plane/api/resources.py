"""The admin API's resource routers: backends, models, revisions, fleet and the gateway contract."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from control_plane.api.collections import NamePath, collection_router
from control_plane.api.deps import ControlPlaneDep, WriteOptionsDep
from control_plane.diff import diff_states
from control_plane.domain import (
    BackendPublic,
    BackendSpec,
    DesiredState,
    GatewayPolicy,
    ModelPublic,
    ModelSpec,
    Splits,
)
from control_plane.errors import ConflictError, NotFoundError
from control_plane.validation import models_using
from control_plane.xds.resources import SHORT_NAMES


def _backend_unused(state: DesiredState, name: str) -> None:
    users = models_using(state, name)
    if users:
        raise ConflictError(
            f"backend '{name}' is still used by model(s) {', '.join(users)}; "
            "remove it from their splits first",
            field="name",
        )


def _model_not_default(state: DesiredState, name: str) -> None:
    if state.default_model == name:
        raise ConflictError(
            f"model '{name}' is the default_model; change default_model first", field="name"
        )


backends = collection_router(
    kind="backend",
    attr="backends",
    spec=BackendSpec,
    public=BackendPublic,
    before_delete=_backend_unused,
)
models = collection_router(
    kind="model",
    attr="models",
    spec=ModelSpec,
    public=ModelPublic,
    before_delete=_model_not_default,
)


class SplitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    splits: Splits


@models.put("/{name}/splits", summary="Change a model's weights (a route-only push)")
async def put_splits(
    name: NamePath, body: SplitsBody, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    def mutate(state: DesiredState) -> DesiredState:
        if name not in state.models:
            raise NotFoundError(f"model '{name}' does not exist")
        # The body's `Splits` type already ran the weight rules, naming the field.
        updated = state.models[name].model_copy(update={"splits": body.splits})
        return state.model_copy(update={"models": {**state.models, name: updated}})

    weights = ", ".join(f"{s.backend}={s.weight}" for s in body.splits)
    return await opts.apply(cp, mutate, f"set splits of {name}: {weights}")


revisions = APIRouter(prefix="/revisions", tags=["revisions"])


@revisions.get("", summary="List revisions, newest first")
async def list_revisions(
    cp: ControlPlaneDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    return {
        "head": cp.head.number,
        "revisions": [r.summary() for r in cp.store.list(limit=limit, before=before)],
    }


@revisions.get("/{number}", summary="Show one revision with its full desired state")
async def get_revision(number: int, cp: ControlPlaneDep) -> dict[str, Any]:
    revision = cp.store.get(number)
    return {**revision.summary(), "state": revision.state.model_dump(mode="json")}


@revisions.get("/{number}/diff", summary="Diff a revision against another (default: its parent)")
async def diff_revision(
    number: int,
    cp: ControlPlaneDep,
    against: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    new = cp.store.get(number)
    base = against if against is not None else number - 1
    old_state = cp.store.get(base).state if base >= 1 else DesiredState()
    return {"from": base, "to": number, "changes": diff_states(old_state, new.state)}


@revisions.post("/{number}/restore", summary="Make an old revision's state the new head")
async def restore_revision(
    number: int, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    target = cp.store.get(number)
    return await opts.apply(cp, lambda _: target.state, f"restore revision {number}")


system = APIRouter(tags=["state"])
# The filter's long-poll; app.py lets the read-only dataplane token call it.
data_path = APIRouter(tags=["state"])


@system.get("/state", summary="The whole desired state at the head revision")
async def get_state(cp: ControlPlaneDep, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{cp.head.number}"'
    return {"revision": cp.head.number, "state": cp.head.state.model_dump(mode="json")}


@system.put("/state", summary="Replace the whole desired state (declarative apply)")
async def put_state(
    body: DesiredState, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    return await opts.apply(cp, lambda _: body, "apply whole state")


@system.get("/gateway-policy", summary="Limits and cache policy the gateway filter enforces")
async def get_gateway_policy(cp: ControlPlaneDep, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{cp.head.number}"'
    return cp.head.state.gateway.model_dump(mode="json")


@system.put("/gateway-policy", summary="Replace the gateway filter's limits and cache policy")
async def put_gateway_policy(
    body: GatewayPolicy, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    return await opts.apply(
        cp, lambda state: state.model_copy(update={"gateway": body}), "set gateway policy"
    )


@system.get("/fleet", summary="Connected Envoys, what each ACKed, and their last NACKs")
async def get_fleet(cp: ControlPlaneDep) -> dict[str, Any]:
    snapshot = cp.snapshot
    return {
        "revision": cp.head.number,
        "snapshot_version": snapshot.version,
        "versions": {SHORT_NAMES[t]: v for t, v in snapshot.versions.items()},
        "nodes": cp.fleet.to_public(),
    }


@data_path.get(
    "/gateway-config",
    summary="The gateway filter's contract; long-polls while `after` is current",
    responses={304: {"description": "unchanged within timeout_s"}},
)
async def gateway_config(
    cp: ControlPlaneDep,
    after: Annotated[str | None, Query(max_length=64)] = None,
    timeout_s: Annotated[float, Query(ge=0, le=120)] = 0,
) -> Any:
    config = await cp.wait_gateway_config(after, timeout_s)
    if config is None:
        return Response(status_code=304)
    return config.model_dump(mode="json")
