"""The POST /v1/audio/speech body: parsed and checked against the configured limits.

A pure function of the body bytes and the limits, so it can be fuzzed on its own: it
either returns a SpeechRequest or raises a RequestRejected (400 or 413), never anything
else. The fields and their types are the contract's (ttsgw_contract.speech, shared with
the workers); what is checked here is the policy: the speed range, the input length and
the prompt clip. Which model names exist is the processor's business (404), not the parser's.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

import soundfile
from pydantic import ValidationError

from gateway.errors import InvalidRequestError, PayloadTooLargeError
from ttsgw_contract.limits import PROMPT_MIN_RATE, SpeechLimits, max_speech_body_bytes
from ttsgw_contract.speech import (
    ERROR_CODES,
    RESPONSE_FORMATS,
    STREAM_FORMATS,
    SpeechBody,
    SpeechRequest,
)

__all__ = ["RESPONSE_FORMATS", "STREAM_FORMATS", "SpeechRequest", "parse_speech_request"]

_PROMPT_CONTAINERS = ("WAV", "FLAC")


def check_body_size(size: int, limits: SpeechLimits | None = None) -> None:
    """Refuse a body no valid request under ``limits`` can have, before reading it.

    Checked before the JSON is parsed, so megabytes that could only be refused cost a
    length comparison. (Refusing at the request headers from Content-Length was tried:
    Envoy then resets the client's upload and the client sees a connection error.)
    """
    limits = limits or SpeechLimits()
    largest = max_speech_body_bytes(limits.max_input_chars, limits.max_prompt_audio_bytes)
    if size > largest:
        raise PayloadTooLargeError(
            f"The request body is {size} bytes; no valid speech request under this "
            f"gateway's limits is larger than {largest} bytes.",
            code="request_too_large",
        )


def parse_speech_request(body: bytes, limits: SpeechLimits | None = None) -> SpeechRequest:
    limits = limits or SpeechLimits()
    check_body_size(len(body), limits)
    try:
        wire = SpeechBody.model_validate(_json_object(body))
    except ValidationError as exc:
        raise _rejection(exc, limits) from None
    _check_input(wire.input, limits)
    _check_speed(wire.speed, limits)
    if wire.prompt_text is not None and wire.prompt_audio is None:
        raise InvalidRequestError(
            "'prompt_text' is only allowed together with 'prompt_audio'.", param="prompt_text"
        )
    prompt = _prompt_audio(wire.prompt_audio, limits) if wire.prompt_audio is not None else None
    # Validated again rather than model_construct (pure Python, no faster): a parsed
    # request holds the contract's guarantees whoever builds it.
    return SpeechRequest.model_validate({**wire.__dict__, "prompt_audio": prompt})


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequestError(
            "The request body is required: a JSON object with 'model' and 'input'."
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and integers past Python's digit limit too.
        raise InvalidRequestError(
            "We could not parse the JSON body of your request. The body must be a JSON object."
        ) from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    for name in ("model", "input"):
        if payload.get(name) is None:
            raise InvalidRequestError(f"Missing required parameter: '{name}'.", param=name)
    return payload


def _rejection(exc: ValidationError, limits: SpeechLimits) -> InvalidRequestError:
    error = exc.errors(include_url=False)[0]
    param = str(error["loc"][0]) if error["loc"] else None
    code = "invalid_value"
    if error["type"] in ERROR_CODES:
        # The contract's own checks (unencodable or blank text) word their message already.
        message, code = error["msg"], error["type"]
    elif param == "response_format":
        message = f"'response_format' must be one of: {', '.join(RESPONSE_FORMATS)}."
    elif param == "stream_format":
        message = f"'stream_format' must be one of: {', '.join(STREAM_FORMATS)}."
    elif param == "speed" and error["type"] != "float_type":
        # Past what any engine can do; the policy's range is the one the client may use.
        message = _speed_range(limits)
    elif param == "speed":
        message = "'speed' must be a number."
    else:
        message = f"'{param}' must be a string." if param else "Invalid request body."
    return InvalidRequestError(message, param=param, code=code)


def _check_input(text: str, limits: SpeechLimits) -> None:
    if len(text) > limits.max_input_chars:
        raise PayloadTooLargeError(
            f"'input' is {len(text)} characters; the limit is {limits.max_input_chars}.",
            param="input",
            code="input_too_long",
        )


def _check_speed(speed: float, limits: SpeechLimits) -> None:
    # The schema bounds speed to what the engines can do; the policy may narrow that.
    if not limits.min_speed <= speed <= limits.max_speed:
        raise InvalidRequestError(_speed_range(limits), param="speed", code="invalid_value")


def _speed_range(limits: SpeechLimits) -> str:
    return f"'speed' must be between {limits.min_speed:g} and {limits.max_speed:g}."


def _prompt_audio(b64: str, limits: SpeechLimits) -> bytes:
    # Refuse an oversized clip before decoding it: base64 is 4 characters per 3 bytes.
    if len(b64) // 4 * 3 > limits.max_prompt_audio_bytes + 3:
        raise _prompt_too_large(limits)
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_prompt("'prompt_audio' is not valid base64.") from None
    if len(raw) > limits.max_prompt_audio_bytes:
        raise _prompt_too_large(limits)
    try:
        info = soundfile.info(io.BytesIO(raw))
    except Exception:
        # libsndfile's errors are many and untyped (LibsndfileError, RuntimeError,
        # TypeError); any of them means "not an audio file we accept".
        raise _bad_prompt("'prompt_audio' must be a WAV or FLAC file.") from None
    if info.format not in _PROMPT_CONTAINERS:
        raise _bad_prompt(f"'prompt_audio' must be WAV or FLAC, got {info.format}.")
    if info.samplerate < PROMPT_MIN_RATE:
        raise _bad_prompt(
            f"'prompt_audio' must be sampled at >= {PROMPT_MIN_RATE} Hz, got {info.samplerate} Hz."
        )
    if info.frames <= 0:
        raise _bad_prompt("'prompt_audio' is empty.")
    seconds = info.frames / info.samplerate
    if seconds > limits.max_prompt_audio_seconds:
        raise _bad_prompt(
            f"'prompt_audio' must be at most {limits.max_prompt_audio_seconds:g} s long, "
            f"got {seconds:.1f} s."
        )
    return raw


def _bad_prompt(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param="prompt_audio", code="invalid_prompt_audio")


def _prompt_too_large(limits: SpeechLimits) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"'prompt_audio' is larger than {limits.max_prompt_audio_bytes} bytes.",
        param="prompt_audio",
        code="prompt_audio_too_large",
    )
