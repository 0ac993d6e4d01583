"""Every size and range limit of a speech request, and the transport limits derived from them.

One place, so that Envoy's buffer, the ext_proc gRPC stream on both sides, the filter's
body check and the workers' schema all follow from the same numbers. A body that the
filter could accept must fit every hop before it; a body that does not fit any hop gets
an OpenAI-shaped 413, never a 5xx (docs/decisions.md, "One set of size limits").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# What the engines can do: the range the workers accept and the policy may not exceed.
MIN_SPEED = 0.25
MAX_SPEED = 4.0

DEFAULT_MAX_INPUT_CHARS = 4096
DEFAULT_MAX_PROMPT_AUDIO_BYTES = 10 * 1024 * 1024
# The workers refuse longer prompt clips; the policy may only lower it.
MAX_PROMPT_AUDIO_SECONDS = 30.0
DEFAULT_MAX_PROMPT_AUDIO_SECONDS = MAX_PROMPT_AUDIO_SECONDS
PROMPT_MIN_RATE = 16_000

# JSON can spell one character in at most 12 bytes (a surrogate pair as two \uXXXX
# escapes), and base64 grows bytes by 4/3; the slack covers the other fields and spaces.
_JSON_BYTES_PER_CHAR = 12
_BODY_SLACK_BYTES = 256 * 1024
# The gRPC message around a buffered body carries headers and protobuf framing too.
_GRPC_FRAMING_BYTES = 1024 * 1024


class SpeechLimits(BaseModel):
    """What a speech request may carry; the defaults are the gateway policy's."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    max_input_chars: int = Field(default=DEFAULT_MAX_INPUT_CHARS, ge=1)
    max_prompt_audio_bytes: int = Field(default=DEFAULT_MAX_PROMPT_AUDIO_BYTES, ge=1)
    max_prompt_audio_seconds: float = Field(default=DEFAULT_MAX_PROMPT_AUDIO_SECONDS, gt=0)
    min_speed: float = Field(default=MIN_SPEED, ge=MIN_SPEED, le=MAX_SPEED)
    max_speed: float = Field(default=MAX_SPEED, ge=MIN_SPEED, le=MAX_SPEED)


def max_speech_body_bytes(max_input_chars: int, max_prompt_audio_bytes: int) -> int:
    """The largest body a valid speech request can have under these limits."""
    base64_prompt = (max_prompt_audio_bytes + 2) // 3 * 4
    return max_input_chars * _JSON_BYTES_PER_CHAR + base64_prompt + _BODY_SLACK_BYTES


# The transport limits, fixed at start (Envoy's listener and the filter's gRPC server are
# built once). A policy whose largest valid body would not fit is refused by the control
# plane (``fits_transport``), so the filter, not a hop before it, judges every body.
MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024
# Both ends of the ext_proc stream: Envoy's gRPC client and the filter's grpc.aio server.
MAX_EXT_PROC_MESSAGE_BYTES = MAX_REQUEST_BODY_BYTES + _GRPC_FRAMING_BYTES


def fits_transport(max_input_chars: int, max_prompt_audio_bytes: int) -> bool:
    return max_speech_body_bytes(max_input_chars, max_prompt_audio_bytes) <= MAX_REQUEST_BODY_BYTES
