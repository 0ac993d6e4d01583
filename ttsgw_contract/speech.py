"""The speech request of POST /v1/audio/speech: its fields and their types, for filter and workers.

One schema, two forms (FastAPI's Base/Create/Public family):

    _SpeechFields   every field but prompt_audio, with its wire type and default
    ├── SpeechBody      the body as sent (prompt_audio base64); the workers' schema, and
    │                   what the filter validates before checking the policy's limits
    └── SpeechRequest   a valid request (prompt_audio decoded); what the cache key hashes

The speed range here is what the engines can do (limits.MIN_SPEED..MAX_SPEED); the gateway
policy may only narrow it (SpeechLimits), so a worker accepts every speed the filter lets
through. Every string must be encodable as UTF-8: JSON can smuggle in lone surrogates
(``"\\ud800"``, or their raw CESU-8 bytes, which ``json.loads`` lets through), and those
would fail later in whatever encodes the text (the cache key, a header, an engine).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationInfo
from pydantic_core import PydanticCustomError

from ttsgw_contract.limits import MAX_SPEED, MIN_SPEED

ResponseFormat = Literal["wav", "pcm", "flac", "mp3", "opus"]
StreamFormat = Literal["audio", "sse"]
RESPONSE_FORMATS: tuple[str, ...] = get_args(ResponseFormat)
STREAM_FORMATS: tuple[str, ...] = get_args(StreamFormat)

DEFAULT_VOICE = "alloy"
# OpenAI defaults to mp3; WAV is what every client decodes without a codec.
DEFAULT_RESPONSE_FORMAT: ResponseFormat = "wav"
DEFAULT_SPEED = 1.0

# The error types this schema raises itself; both sides put them on the wire as `code`.
INVALID_TEXT = "invalid_text"
BLANK_TEXT = "blank_text"
ERROR_CODES = frozenset({INVALID_TEXT, BLANK_TEXT})


def _encodable(value: str, info: ValidationInfo) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PydanticCustomError(
            INVALID_TEXT,
            "'{field}' must be valid Unicode text; it has a lone surrogate {char} at index {at}.",
            {"field": info.field_name, "char": f"U+{ord(value[exc.start]):04X}", "at": exc.start},
        ) from None
    return value


def _non_blank(value: str, info: ValidationInfo) -> str:
    _encodable(value, info)
    if not value.strip():
        raise PydanticCustomError(
            BLANK_TEXT, "'{field}' must be a non-empty string.", {"field": info.field_name}
        )
    return value


# Strict: a JSON number is not text. One validator per field: each is a Python call on
# the filter's hot path. An unencodable string is reported as such, blank or not.
Text = Annotated[StrictStr, AfterValidator(_encodable)]
NonBlankText = Annotated[StrictStr, AfterValidator(_non_blank)]
# Strict: JSON true is not a speed, and "1.5" is not a number.
Speed = Annotated[float, Field(strict=True, ge=MIN_SPEED, le=MAX_SPEED)]


class _SpeechFields(BaseModel):
    # The OpenAI SDK may send fields we do not know; they are ignored, not rejected.
    model_config = ConfigDict(extra="ignore")

    model: NonBlankText
    # The length limit is configured (the policy's, a worker's setting): 413, not a type.
    input: NonBlankText
    voice: NonBlankText = DEFAULT_VOICE
    response_format: ResponseFormat = DEFAULT_RESPONSE_FORMAT
    speed: Speed = DEFAULT_SPEED
    instructions: Text | None = None
    stream_format: StreamFormat = "audio"
    prompt_text: Text | None = None


class SpeechBody(_SpeechFields):
    """The body as the client sends it; ``prompt_audio`` is a base64 WAV or FLAC clip."""

    prompt_audio: Text | None = None


class SpeechRequest(_SpeechFields):
    """A valid speech request; ``prompt_audio`` holds the decoded bytes."""

    # Built by code, not by clients: an unknown field here is a bug, not an SDK extra.
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_audio: bytes | None = None


SPEECH_FIELDS: tuple[str, ...] = tuple(SpeechBody.model_fields)
