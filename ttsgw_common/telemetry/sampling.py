"""The one sampling rule every emitter and the relay share: keep by a hash of the trace id.

It is OpenTelemetry's ``TraceIdRatioBased`` rule (the trace id's low 64 bits below
``ratio * 2**64``), so an OTel SDK with that sampler, the relay and any other process
with the same ratio reach the same verdict for the same trace without talking.
"""

from __future__ import annotations

_LOW_64 = (1 << 64) - 1


def ratio_bound(ratio: float) -> int:
    return round(min(max(ratio, 0.0), 1.0) * (1 << 64))


def keeps(trace_id: int | str, ratio: float) -> bool:
    """Whether the ratio alone keeps this trace; ``trace_id`` as an int or hex (64/128-bit)."""
    value = int(trace_id, 16) if isinstance(trace_id, str) else trace_id
    return (value & _LOW_64) < ratio_bound(ratio)
