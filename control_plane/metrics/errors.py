"""Errors of the metrics package; the gRPC receiver and the admin API map them to the wire.

ControlPlaneError (control_plane/errors.py)
└── MetricsError
    ├── DecodeError              a metrics_service flush is not valid protobuf
    └── MetricsUnavailableError  503  the source cannot answer (Prometheus down, bad reply)
"""

from __future__ import annotations

from control_plane.errors import ControlPlaneError


class MetricsError(ControlPlaneError):
    code = "metrics_error"


class DecodeError(MetricsError):
    code = "metrics_decode_error"


class MetricsUnavailableError(MetricsError):
    status = 503
    code = "metrics_unavailable"
