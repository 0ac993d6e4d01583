"""Dependencies shared by the admin API's routers: auth, the control plane, write options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, HTTPException, Query, Request

from control_plane.errors import ForbiddenError, InvalidStateError
from control_plane.service import ControlPlane, Mutation
from control_plane.tokens import Tokens
from ttsgw_contract.roles import Role, allows


def require_role(needed: Role) -> Callable[..., Role]:
    """A dependency: 401 without a known bearer token, 403 when its role is below ``needed``."""

    def check(request: Request, authorization: Annotated[str | None, Header()] = None) -> Role:
        tokens: Tokens = request.app.state.tokens
        scheme, _, token = (authorization or "").partition(" ")
        role = tokens.role_of(token) if scheme.lower() == "bearer" else None
        if role is None:
            raise HTTPException(
                401,
                "missing or wrong admin token: send 'Authorization: Bearer <token>' "
                "(the token is in DIR/admin-token or TTSGW_ADMIN_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not allows(role, needed):
            raise ForbiddenError(f"this endpoint needs role {needed}; the token has role {role}")
        return role

    check.__name__ = f"require_{needed}"
    return check


require_admin = require_role(Role.ADMIN)
# The reads the gateway filter polls: any token, the dataplane one included.
require_dataplane = require_role(Role.DATAPLANE)
# Kept under its old name for the routers that import it (rollouts).
require_token = require_admin


def _control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


ControlPlaneDep = Annotated[ControlPlane, Depends(_control_plane)]


@dataclass(frozen=True)
class WriteOptions:
    author: str
    if_match: int | None
    wait_acked: float | None

    async def apply(self, cp: ControlPlane, mutate: Mutation, message: str) -> dict[str, Any]:
        """Apply one write with these options; the reply body every write endpoint returns."""
        result = await cp.apply(
            mutate,
            author=self.author,
            message=message,
            if_match=self.if_match,
            wait_acked=self.wait_acked,
        )
        return result.public()


def _write_options(
    wait: Annotated[
        Literal["acked"] | None, Query(description="'acked' blocks until every Envoy ACKs")
    ] = None,
    timeout_s: Annotated[float, Query(gt=0, le=300)] = 30.0,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
    x_author: Annotated[str | None, Header(alias="X-Author", max_length=200)] = None,
) -> WriteOptions:
    revision: int | None = None
    if if_match is not None and if_match.strip() != "*":
        raw = if_match.strip().removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise InvalidStateError(
                f"If-Match must be a revision number, got {if_match!r}", field="If-Match"
            )
        revision = int(raw)
    return WriteOptions(
        author=x_author or "admin",
        if_match=revision,
        wait_acked=timeout_s if wait == "acked" else None,
    )


WriteOptionsDep = Annotated[WriteOptions, Depends(_write_options)]
