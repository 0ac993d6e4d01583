"""The ext_proc processing modes: one source for Envoy's static mode and the filter's overrides.

The translator configures Envoy with ``STATIC_MODE``; the filter overrides it per
request with ``PASSTHROUGH_MODE``. Envoy replaces the whole mode on override (an unset
header mode means SEND), so the two must be spelled out together here.
"""

from __future__ import annotations

from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode

# Headers must be SEND: with SKIP the router has already picked a cluster before the
# body arrives, so re-routing by the body's model comes too late (DESIGN.md §2).
STATIC_MODE = ProcessingMode(
    request_header_mode=ProcessingMode.SEND,
    request_body_mode=ProcessingMode.BUFFERED,
    request_trailer_mode=ProcessingMode.SKIP,
    response_header_mode=ProcessingMode.SKIP,
    response_body_mode=ProcessingMode.NONE,
    response_trailer_mode=ProcessingMode.SKIP,
)

# For requests the filter has no business with: Envoy streams their bodies instead of
# buffering them for us.
PASSTHROUGH_MODE = ProcessingMode()
PASSTHROUGH_MODE.CopyFrom(STATIC_MODE)
PASSTHROUGH_MODE.request_body_mode = ProcessingMode.NONE
