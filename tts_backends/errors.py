"""Errors of the TTS workers, mapped to OpenAI's wire shape in one place (app.py).

WorkerError                    500  server_error        a genuine engine failure
├── BadRequestError            400  invalid_request_error; names the field in `param`
│   ├── UnknownVoiceError      400  param "voice"
│   ├── UnsupportedFormatError 400  param "response_format" (or "stream_format")
│   └── InvalidPromptAudioError 400 param "prompt_audio"
├── VoiceNotFoundError         404  invalid_request_error; no registered voice has this id
├── InputTooLongError          413  invalid_request_error, param "input"
├── OverloadedError            429  rate_limit_error; shed by the scheduler, with Retry-After
├── EngineNotReadyError        503  service_unavailable; the engine is loading
├── EngineOutOfMemoryError     503  service_unavailable; the GPU ran out of memory for this
│                                   request only (retriable; the worker stays up)
├── VoiceRegistryUnavailableError 503 service_unavailable; Redis is down or not configured
├── SynthesisError             500  the engine failed on a valid request
└── StartupError                    never on the wire: the worker cannot start
    ├── EngineLoadError             the engine could not load (missing binary, weights)
    └── PortInUseError              the listen address is taken
"""

from __future__ import annotations


class WorkerError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "internal_error"
    default_param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param if param is not None else self.default_param


class BadRequestError(WorkerError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class UnknownVoiceError(BadRequestError):
    code = "unknown_voice"
    default_param = "voice"


class UnsupportedFormatError(BadRequestError):
    code = "unsupported_format"
    default_param = "response_format"


class InvalidPromptAudioError(BadRequestError):
    code = "invalid_prompt_audio"
    default_param = "prompt_audio"


class VoiceNotFoundError(WorkerError):
    status = 404
    type = "invalid_request_error"
    code = "voice_not_found"
    default_param = "voice_id"


class InputTooLongError(WorkerError):
    status = 413
    type = "invalid_request_error"
    code = "input_too_long"
    default_param = "input"


class OverloadedError(WorkerError):
    """Shed by the scheduler: the queue is full, or the wait would outlast the level's timeout."""

    status = 429
    type = "rate_limit_error"
    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        if code is not None:
            self.code = code


class EngineNotReadyError(WorkerError):
    status = 503
    type = "service_unavailable"
    code = "engine_not_ready"


class EngineOutOfMemoryError(WorkerError):
    status = 503
    type = "service_unavailable"
    code = "gpu_out_of_memory"


class VoiceRegistryUnavailableError(WorkerError):
    """The voice registry cannot answer: Redis is unreachable, or no Redis is configured."""

    status = 503
    type = "service_unavailable"
    code = "voice_registry_unavailable"


class SynthesisError(WorkerError):
    status = 500
    type = "server_error"
    code = "synthesis_failed"


class StartupError(WorkerError):
    code = "startup_failed"


class EngineLoadError(StartupError):
    code = "engine_load_failed"


class PortInUseError(StartupError):
    code = "port_in_use"
