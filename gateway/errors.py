"""Errors of the gateway filter; openai_errors.py maps rejections to the wire in one place.

    GatewayError
    ├── RequestRejected              a client request the filter answers itself (4xx)
    │   ├── InvalidRequestError      400  bad JSON, missing or ill-typed field; names ``param``
    │   ├── UnauthorizedError        401  API keys are required and this one is missing/unknown
    │   ├── ModelNotFoundError       404  the model is not in the current gateway config
    │   ├── PayloadTooLargeError     413  input or prompt_audio over the configured limit
    │   ├── RateLimitedError         429  the key's priority class is over its rate limit
    │   └── QueueStatusUnavailableError 503  GET /v1/queue while the control plane's queue
    │                                view cannot be fetched (the only non-4xx rejection)
    ├── ConfigSourceError            the control plane's gateway-config cannot be fetched or
    │                                parsed; the config source keeps its last good copy
    └── StartupError                 the filter cannot start (port taken, unreadable token
                                     file); ``main.run`` prints it on one line and exits 2

Anything else raised inside a processor is a bug: the stream loop logs it and answers an
OpenAI-shaped 500 in a request phase, or lets the response continue untouched in a
response phase (gateway/ext_proc/stream.py says why).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway package raises on purpose."""


class RequestRejected(GatewayError):
    """A request the filter answers with an error instead of forwarding it."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequestError(RequestRejected):
    status = 400


class ModelNotFoundError(RequestRejected):
    status = 404
    code = "model_not_found"


class PayloadTooLargeError(RequestRejected):
    status = 413


class UnauthorizedError(RequestRejected):
    status = 401
    code = "invalid_api_key"


class RateLimitedError(RequestRejected):
    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueStatusUnavailableError(RequestRejected):
    status = 503
    type = "server_error"
    code = "queue_status_unavailable"


class ConfigSourceError(GatewayError):
    """The control plane could not be reached, refused us, or answered garbage."""


class StartupError(GatewayError):
    """The filter process cannot start; the message is shown to the operator as is."""
