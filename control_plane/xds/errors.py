"""Errors of the xDS server; the gRPC boundary (server.py) maps them to status codes.

    ControlPlaneError (control_plane/errors.py)
    └── XdsError
        ├── ProtocolError   an Envoy broke the xDS protocol (e.g. no node); INVALID_ARGUMENT
        └── BindError       the xDS port cannot be bound (taken, bad address)

InconsistentSnapshotError (control_plane/errors.py) is raised by Snapshot.build() (through
Snapshot.consistent()), so nothing inconsistent is ever built, let alone published.
"""

from __future__ import annotations

from control_plane.errors import ControlPlaneError


class XdsError(ControlPlaneError):
    code = "xds_error"


class ProtocolError(XdsError):
    code = "xds_protocol_error"


class BindError(XdsError):
    code = "xds_bind_error"
