"""The ext_proc processing modes: one source for Envoy's static mode and the filter's overrides.

The translator configures Envoy with ``STATIC_MODE``; the filter overrides it per
request. Envoy replaces the whole mode on override (an unset header mode means SEND), so
they must be spelled out together here.

Verified against Envoy 1.40 (``allow_mode_override: true``):

- A ``mode_override`` is honoured in the answer to the request headers and to the
  response headers; in the answer to the request body it is silently ignored. So the
  filter must ask for the response headers before it has seen the body (``CACHE_MODE``,
  only when a cache is configured), and decides in the response-headers answer whether
  to see the response body (``FILL_MODE``, only for the leader of a cache fill).
- ``BUFFERED`` response bodies fail beyond Envoy's buffer limit (a 3 MB body became a
  500 from Envoy; 1.1 MB still passed), while ``STREAMED`` handles any size in chunks of
  at most 1 MiB, the last one possibly empty with ``end_of_stream``. The filter
  accumulates the chunks itself, and a hundreds-of-KB WAV is one or two messages.
- A message the filter answers after ``message_timeout`` is dropped and, with
  ``failure_mode_allow``, the request goes on unfiltered. So the stream loop sends
  ``override_message_timeout`` when a phase takes longer than 250 ms (a single-flight
  follower waiting for the leader's synthesis), up to the ``max_message_timeout`` the
  translator sets (60 s).
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

# Speech requests when a response cache is configured: the filter must see the response
# headers to add x-tts-cache and to decide whether to fill the cache.
CACHE_MODE = ProcessingMode()
CACHE_MODE.CopyFrom(STATIC_MODE)
CACHE_MODE.response_header_mode = ProcessingMode.SEND

# The leader of a cache fill, from its response headers on: the body in chunks.
FILL_MODE = ProcessingMode()
FILL_MODE.CopyFrom(CACHE_MODE)
FILL_MODE.response_body_mode = ProcessingMode.STREAMED
