"""The header names that cross the boundary between client, Envoy, filter and workers.

The filter sets the ``x-tts-`` steering headers, the translator's routes match them and
the workers read them; spelling them here once is what keeps the three in step.
"""

from __future__ import annotations

# Headers that steer routing and scheduling; only the filter may set them.
RESERVED_PREFIX = "x-tts-"
MODEL_HEADER = "x-tts-model"
# Set on every speech request the filter has seen, so Envoy's degraded route (meant for
# when the filter is down) never answers a request the filter handled or rejected.
FILTERED_HEADER = "x-tts-filtered"
# The priority level (high | default | low) and class the filter resolved from the API key.
PRIORITY_HEADER = "x-tts-priority"
CLASS_HEADER = "x-tts-class"
# Which backend (cluster) answered; set by the route, read by the cache fill.
BACKEND_HEADER = "x-tts-backend"
# Envoy's degraded route (filter down) marks its answers with this.
DEGRADED_HEADER = "x-tts-degraded"
# hit | miss | bypass, on every speech answer when a cache is configured.
CACHE_HEADER = "x-tts-cache"
# Which engine a worker ran; informational.
ENGINE_HEADER = "x-tts-engine"
REQUEST_ID_HEADER = "x-request-id"
