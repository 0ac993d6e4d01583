"""Errors of the control plane, mapped to the admin API's wire format in one place (api/errors.py).

ControlPlaneError
├── InvalidStateError        422  the desired state breaks a rule; names the field
├── ConflictError            409  a reference would dangle, or a rollout owns the model
├── ForbiddenError           403  the token's role may not call this endpoint
├── NotFoundError            404  no such backend, model or revision
├── PreconditionFailedError  412  If-Match names a revision that is no longer the head
├── InconsistentSnapshotError     the translator produced resources that reference
│                                 missing ones; a bug, never pushed
├── StoreError               503  the revision store cannot be read or written
└── QueueStatusUnavailableError 503  no queue poller runs, so no queue view exists
"""

from __future__ import annotations


class ControlPlaneError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidStateError(ControlPlaneError):
    status = 422
    code = "invalid"


class ConflictError(ControlPlaneError):
    status = 409
    code = "conflict"


class ForbiddenError(ControlPlaneError):
    status = 403
    code = "forbidden"


class NotFoundError(ControlPlaneError):
    status = 404
    code = "not_found"


class PreconditionFailedError(ControlPlaneError):
    status = 412
    code = "revision_mismatch"


class InconsistentSnapshotError(ControlPlaneError):
    status = 500
    code = "inconsistent_snapshot"


class StoreError(ControlPlaneError):
    status = 503
    code = "store_unavailable"


class QueueStatusUnavailableError(ControlPlaneError):
    status = 503
    code = "queue_status_unavailable"
