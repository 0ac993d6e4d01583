"""One CRUD router shape for every named collection of the desired state (backends, models).

Every write goes through ControlPlane.apply, so it is validated as a whole new state
and either becomes one revision or changes nothing.
"""

# No `from __future__ import annotations`: FastAPI must see the real body types, which
# are only known inside the factory.
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from control_plane.api.deps import ControlPlaneDep, WriteOptionsDep
from control_plane.domain import DesiredState
from control_plane.errors import ConflictError, NotFoundError

NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$", max_length=63)]
DeleteGuard = Callable[[DesiredState, str], None]


def _replace(state: DesiredState, attr: str, items: dict[str, Any]) -> DesiredState:
    return state.model_copy(update={attr: items})


def collection_router(
    *,
    kind: str,
    attr: str,
    spec: type[BaseModel],
    public: type[BaseModel],
    before_delete: DeleteGuard | None = None,
) -> APIRouter:
    router = APIRouter(prefix=f"/{attr}", tags=[attr])

    def items(state: DesiredState) -> dict[str, Any]:
        return dict(getattr(state, attr))

    def as_public(name: str, value: BaseModel) -> dict[str, Any]:
        return public.model_validate({"name": name, **value.model_dump()}).model_dump(mode="json")

    @router.get("", summary=f"List {attr}")
    async def list_items(cp: ControlPlaneDep, response: Response) -> dict[str, Any]:
        head = cp.head
        response.headers["ETag"] = f'"{head.number}"'
        return {
            "revision": head.number,
            attr: [as_public(n, v) for n, v in sorted(items(head.state).items())],
        }

    @router.get("/{name}", summary=f"Show one {kind}")
    async def get_item(name: NamePath, cp: ControlPlaneDep, response: Response) -> dict[str, Any]:
        head = cp.head
        current = items(head.state)
        if name not in current:
            raise NotFoundError(f"{kind} '{name}' does not exist")
        response.headers["ETag"] = f'"{head.number}"'
        return as_public(name, current[name])

    @router.post("", status_code=201, summary=f"Create a {kind}")
    async def create_item(
        body: public,  # type: ignore[valid-type]
        cp: ControlPlaneDep,
        opts: WriteOptionsDep,
    ) -> dict[str, Any]:
        data = body.model_dump()  # type: ignore[attr-defined]
        name = data.pop("name")

        def mutate(state: DesiredState) -> DesiredState:
            current = items(state)
            if name in current:
                raise ConflictError(
                    f"{kind} '{name}' already exists; use PUT /{attr}/{name} to replace it",
                    field="name",
                )
            return _replace(state, attr, {**current, name: spec.model_validate(data)})

        return await opts.apply(cp, mutate, f"create {kind} {name}")

    @router.put("/{name}", summary=f"Create or replace a {kind}")
    async def put_item(
        name: NamePath,
        body: spec,  # type: ignore[valid-type]
        cp: ControlPlaneDep,
        opts: WriteOptionsDep,
    ) -> dict[str, Any]:
        def mutate(state: DesiredState) -> DesiredState:
            return _replace(state, attr, {**items(state), name: body})

        return await opts.apply(cp, mutate, f"put {kind} {name}")

    @router.delete("/{name}", summary=f"Delete a {kind}")
    async def delete_item(
        name: NamePath, cp: ControlPlaneDep, opts: WriteOptionsDep
    ) -> dict[str, Any]:
        def mutate(state: DesiredState) -> DesiredState:
            current = items(state)
            if name not in current:
                raise NotFoundError(f"{kind} '{name}' does not exist")
            if before_delete is not None:
                before_delete(state, name)
            del current[name]
            return _replace(state, attr, current)

        return await opts.apply(cp, mutate, f"delete {kind} {name}")

    return router
