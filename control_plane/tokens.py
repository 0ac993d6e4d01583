"""The bearer tokens the admin API accepts, each with its role (ttsgw_contract/roles.py)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from ttsgw_contract.roles import Role


@dataclass(frozen=True)
class Tokens:
    """One token per role the control plane issues; built in main from the settings."""

    by_role: Mapping[Role, str]

    def __post_init__(self) -> None:
        values = list(self.by_role.values())
        if any(not t for t in values):
            raise ValueError("a token must not be empty")
        if len(set(values)) != len(values):
            # One value for two roles would make the lower role's holder an admin.
            raise ValueError("every role needs its own token; two roles share one")

    @classmethod
    def of(cls, admin: str, dataplane: str | None = None) -> Tokens:
        roles = {Role.ADMIN: admin}
        if dataplane is not None:
            roles[Role.DATAPLANE] = dataplane
        return cls(roles)

    def role_of(self, presented: str) -> Role | None:
        """The role of ``presented``, or None; compares in constant time against every token."""
        found: Role | None = None
        for role, token in self.by_role.items():
            # No early exit: how long this takes must not tell which token came close.
            if hmac.compare_digest(presented.encode(), token.encode()) and found is None:
                found = role
        return found
