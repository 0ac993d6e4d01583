"""Errors of the telemetry package.

    TelemetryError
    └── StartupError    the span relay cannot start (port taken, bad URL); ``main.run``
                        prints it on one line and exits 2

Nothing on the request path raises: a collector that is down costs spans, never requests.
"""

from __future__ import annotations


class TelemetryError(Exception):
    """Base of every error the telemetry package raises on purpose."""


class StartupError(TelemetryError):
    """The span relay cannot start; the message is shown to the operator as is."""
