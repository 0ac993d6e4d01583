"""Admin endpoints for priority classes and their API keys (only hashes are ever stored)."""

import hashlib
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from control_plane.api.collections import NamePath
from control_plane.api.deps import ControlPlaneDep, WriteOptionsDep
from control_plane.domain import (
    DesiredState,
    Float,
    PriorityClassPublic,
    PriorityClassSpec,
    PriorityLevel,
)
from control_plane.errors import ConflictError, NotFoundError

router = APIRouter(prefix="/priority-classes", tags=["priority-classes"])

KEY_PREFIX = "ttsgw-"
Fingerprint = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(hashed: str) -> str:
    """Enough of the hash to tell keys apart in a listing, too little to be the hash."""
    return hashed[:12]


def _public(name: str, spec: PriorityClassSpec) -> dict[str, Any]:
    return PriorityClassPublic(
        name=name,
        level=spec.level,
        rate_limit_rps=spec.rate_limit_rps,
        keys=[fingerprint(h) for h in spec.api_key_hashes],
    ).model_dump(mode="json")


def _with_class(state: DesiredState, name: str, spec: PriorityClassSpec) -> DesiredState:
    return state.model_copy(update={"priority_classes": {**state.priority_classes, name: spec}})


def _existing(state: DesiredState, name: str) -> PriorityClassSpec:
    if name not in state.priority_classes:
        raise NotFoundError(f"priority class '{name}' does not exist")
    return state.priority_classes[name]


class ClassBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: PriorityLevel = "default"
    rate_limit_rps: Annotated[Float, Field(gt=0, le=1_000_000)] | None = None


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Bring your own key (e.g. migrating clients); omitted, the control plane makes one.
    api_key: Annotated[str, Field(min_length=16, max_length=256)] | None = None


@router.get("", summary="Priority classes, with key fingerprints (never the keys)")
async def list_classes(cp: ControlPlaneDep) -> dict[str, Any]:
    state = cp.head.state
    return {
        "revision": cp.head.number,
        "require_api_keys": state.gateway.require_api_keys,
        "priority_classes": [_public(n, s) for n, s in sorted(state.priority_classes.items())],
    }


@router.get("/{name}", summary="One priority class")
async def get_class(name: NamePath, cp: ControlPlaneDep) -> dict[str, Any]:
    return _public(name, _existing(cp.head.state, name))


@router.put("/{name}", summary="Create a class, or change its level or rate limit (keys stay)")
async def put_class(
    name: NamePath, body: ClassBody, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    def mutate(state: DesiredState) -> DesiredState:
        current = state.priority_classes.get(name, PriorityClassSpec())
        spec = current.model_copy(update=body.model_dump())
        return _with_class(state, name, spec)

    return await opts.apply(cp, mutate, f"put priority class {name} ({body.level})")


@router.delete("/{name}", summary="Delete a class; its keys stop working")
async def delete_class(
    name: NamePath, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    def mutate(state: DesiredState) -> DesiredState:
        _existing(state, name)
        remaining = {n: s for n, s in state.priority_classes.items() if n != name}
        return state.model_copy(update={"priority_classes": remaining})

    return await opts.apply(cp, mutate, f"delete priority class {name}")


@router.post("/{name}/keys", status_code=201, summary="Add an API key; the key is shown only here")
async def add_key(
    name: NamePath, cp: ControlPlaneDep, opts: WriteOptionsDep, body: KeyBody | None = None
) -> dict[str, Any]:
    key = (body.api_key if body else None) or KEY_PREFIX + secrets.token_urlsafe(24)
    hashed = key_hash(key)

    def mutate(state: DesiredState) -> DesiredState:
        spec = _existing(state, name)
        for other, other_spec in state.priority_classes.items():
            if hashed in other_spec.api_key_hashes:
                raise ConflictError(f"this key already belongs to priority class '{other}'")
        updated = spec.model_copy(update={"api_key_hashes": [*spec.api_key_hashes, hashed]})
        return _with_class(state, name, updated)

    result = await opts.apply(cp, mutate, f"add key {fingerprint(hashed)} to {name}")
    return {**result, "api_key": key, "fingerprint": fingerprint(hashed)}


@router.delete("/{name}/keys/{key_fingerprint}", summary="Revoke one API key by fingerprint")
async def revoke_key(
    name: NamePath, key_fingerprint: Fingerprint, cp: ControlPlaneDep, opts: WriteOptionsDep
) -> dict[str, Any]:
    def mutate(state: DesiredState) -> DesiredState:
        spec = _existing(state, name)
        kept = [h for h in spec.api_key_hashes if fingerprint(h) != key_fingerprint]
        if len(kept) == len(spec.api_key_hashes):
            raise NotFoundError(f"priority class '{name}' has no key {key_fingerprint}")
        return _with_class(state, name, spec.model_copy(update={"api_key_hashes": kept}))

    return await opts.apply(cp, mutate, f"revoke key {key_fingerprint} of {name}")
