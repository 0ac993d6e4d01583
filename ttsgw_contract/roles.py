"""Roles of the admin API's bearer tokens, and the one rule for what each may call.

Ordered by what they may do; a token is allowed an endpoint when its role is at least
the role the endpoint needs:

    dataplane < viewer < operator < admin

- ``dataplane``: what the gateway filter holds. It may only read the two endpoints the
  data path polls (``GET /api/v1/gateway-config`` and ``GET /api/v1/queue``), so a
  leaked filter credential cannot change the routing.
- ``viewer``: reads everything; ``operator``: day-to-day writes; ``admin``: everything.
  The control plane issues admin and dataplane tokens today; viewer and operator are for
  the admin UI's accounts.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    DATAPLANE = "dataplane"
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_RANK = {role: rank for rank, role in enumerate(Role)}


def allows(held: Role, needed: Role) -> bool:
    """Whether a token with role ``held`` may call an endpoint that needs ``needed``."""
    return _RANK[held] >= _RANK[needed]
