"""The desired state: what ops declare, validated as a whole before anything changes.

Defaults follow the source article's static Envoy config (timeout 60 s; retry on
gateway-error,connect-failure,refused-stream x3 with a 30 s per-try timeout; circuit
breaker 10 pending / 20 requests; health check GET /health every 10 s). Every field
can be overridden per backend or per model.

Schema families follow FastAPI's template: ``*Spec`` is the body ops write (the
name lives in the URL), ``*Public`` adds the name for reads.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

from ttsgw_contract import limits

# Names become Envoy cluster names and header values; keep them boring. Underscores
# are reserved for the control plane's own clusters (e.g. ``ttsgw_ext_proc``).
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$", max_length=63)]
BackendKind = Literal["espeak", "cosyvoice3", "openai-compatible"]

# Accept what the OpenAPI schema says and nothing pydantic's lax mode would coerce: a
# "10" or a true for an integer is a client bug, not a weight. Strict floats still take
# integers, since JSON has one number type.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: Annotated[Int, Field(ge=1, le=65535)]


class HealthCheck(_Strict):
    enabled: Bool = True
    path: Annotated[str, StringConstraints(pattern=r"^/")] = "/health"
    interval_s: Annotated[Float, Field(gt=0, le=3600)] = 10.0
    timeout_s: Annotated[Float, Field(gt=0, le=600)] = 5.0
    unhealthy_threshold: Annotated[Int, Field(ge=1, le=100)] = 2
    healthy_threshold: Annotated[Int, Field(ge=1, le=100)] = 2


class CircuitBreaker(_Strict):
    max_connections: Annotated[Int, Field(ge=1)] = 1024
    max_pending_requests: Annotated[Int, Field(ge=1)] = 10
    max_requests: Annotated[Int, Field(ge=1)] = 20
    max_retries: Annotated[Int, Field(ge=0)] = 3


class CircuitBreakers(_Strict):
    """Thresholds per Envoy routing priority, so a low-priority flood cannot drain HIGH."""

    default: CircuitBreaker = CircuitBreaker()
    high: CircuitBreaker = CircuitBreaker()


class OutlierDetection(_Strict):
    enabled: Bool = True
    consecutive_5xx: Annotated[Int, Field(ge=1)] = 5
    consecutive_gateway_failure: Annotated[Int, Field(ge=1)] = 5
    interval_s: Annotated[Float, Field(gt=0)] = 10.0
    base_ejection_time_s: Annotated[Float, Field(gt=0)] = 30.0
    max_ejection_percent: Annotated[Int, Field(ge=0, le=100)] = 50


class BackendSpec(_Strict):
    kind: BackendKind = "openai-compatible"
    endpoints: Annotated[list[Endpoint], Field(min_length=1, max_length=1000)]
    health_check: HealthCheck = HealthCheck()
    circuit_breakers: CircuitBreakers = CircuitBreakers()
    outlier_detection: OutlierDetection = OutlierDetection()
    connect_timeout_s: Annotated[Float, Field(gt=0, le=300)] = 10.0


class BackendPublic(BackendSpec):
    name: Name


class Split(_Strict):
    backend: Name
    weight: Annotated[Int, Field(ge=0, le=10_000)]


def _weights_make_sense(splits: list[Split]) -> list[Split]:
    if not any(s.weight > 0 for s in splits):
        raise ValueError("at least one weight must be above 0")
    names = [s.backend for s in splits]
    if len(set(names)) != len(names):
        raise ValueError("each backend may appear only once")
    return splits


# A model's traffic split; the same rules wherever splits are written (a model, PUT .../splits).
Splits = Annotated[
    list[Split], Field(min_length=1, max_length=64), AfterValidator(_weights_make_sense)
]


# Envoy's HTTP retry conditions (x-envoy-retry-on). Checked here so a typo is a 422
# naming the field rather than a config every Envoy silently ignores.
RETRY_ON_CONDITIONS = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
    }
)


class RetryPolicy(_Strict):
    retry_on: str = "gateway-error,connect-failure,refused-stream"
    num_retries: Annotated[Int, Field(ge=0, le=10)] = 3
    per_try_timeout_s: Annotated[Float, Field(gt=0, le=3600)] = 30.0

    @field_validator("retry_on")
    @classmethod
    def _known_conditions(cls, value: str) -> str:
        unknown = sorted(set(value.split(",")) - RETRY_ON_CONDITIONS)
        if unknown:
            raise ValueError(
                f"unknown retry condition(s) {unknown}; use {sorted(RETRY_ON_CONDITIONS)}"
            )
        return value


# A lower-case HTTP header name (RFC 9110 token, minus the characters proxies mangle).
HeaderName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,127}$")]
# Headers a client cannot set: the filter strips x-tts-*, Envoy owns x-envoy-*.
RESERVED_HEADER_PREFIXES = ("x-tts-", "x-envoy-")


class ModelSpec(_Strict):
    splits: Splits
    timeout_s: Annotated[Float, Field(gt=0, le=3600)] = 60.0
    retry_policy: RetryPolicy = RetryPolicy()
    # How long the gateway may answer a repeated request from its cache; 0 never caches.
    cache_ttl_s: Annotated[Int, Field(ge=0, le=30 * 24 * 3600)] = 3600
    # Sticky A/B: the split is picked by a hash of this request header (e.g. x-user-id),
    # so a user gets the same variant on every proxy; without the header it is random.
    sticky_header: HeaderName | None = None

    @field_validator("sticky_header")
    @classmethod
    def _client_settable(cls, value: str | None) -> str | None:
        if value is not None and value.startswith(RESERVED_HEADER_PREFIXES):
            raise ValueError(
                f"{value!r} is reserved (prefixes {list(RESERVED_HEADER_PREFIXES)}); "
                "clients cannot set it, so every request would be random"
            )
        return value


class ModelPublic(ModelSpec):
    name: Name


PriorityLevel = Literal["high", "default", "low"]
KeyHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class PriorityClassSpec(_Strict):
    """API keys that share a priority level. Only SHA-256 hashes of the keys are stored."""

    level: PriorityLevel = "default"
    api_key_hashes: Annotated[list[KeyHash], Field(max_length=1000)] = []
    # Requests per second for the whole class, per gateway filter; None: unlimited.
    rate_limit_rps: Annotated[Float, Field(gt=0, le=1_000_000)] | None = None


class PriorityClassPublic(_Strict):
    """What the admin API shows: fingerprints (hash prefixes), never hashes or keys."""

    name: Name
    level: PriorityLevel
    rate_limit_rps: Float | None
    keys: list[str]


class GatewayPolicy(_Strict):
    """What the gateway filter enforces on every request and how it caches."""

    # Off by default so OpenAI code works unchanged; on, a request without a known key
    # gets 401.
    require_api_keys: Bool = False

    # The speed range and the prompt length are the engines' (ttsgw_contract.limits): a
    # policy may narrow them, never widen them past what the workers accept.
    max_input_chars: Annotated[Int, Field(ge=1, le=1_000_000)] = limits.DEFAULT_MAX_INPUT_CHARS
    max_prompt_audio_bytes: Annotated[Int, Field(ge=1024)] = limits.DEFAULT_MAX_PROMPT_AUDIO_BYTES
    max_prompt_audio_seconds: Annotated[Float, Field(gt=0, le=limits.MAX_PROMPT_AUDIO_SECONDS)] = (
        limits.DEFAULT_MAX_PROMPT_AUDIO_SECONDS
    )
    min_speed: Annotated[Float, Field(ge=limits.MIN_SPEED, le=limits.MAX_SPEED)] = limits.MIN_SPEED
    max_speed: Annotated[Float, Field(ge=limits.MIN_SPEED, le=limits.MAX_SPEED)] = limits.MAX_SPEED
    cache_enabled: Bool = True
    cache_max_entry_bytes: Annotated[Int, Field(ge=1024, le=512 * 1024 * 1024)] = 8 * 1024 * 1024

    @model_validator(mode="after")
    def _speed_range(self) -> GatewayPolicy:
        if self.min_speed > self.max_speed:
            raise ValueError("min_speed must not exceed max_speed")
        if not limits.fits_transport(self.max_input_chars, self.max_prompt_audio_bytes):
            raise ValueError(
                "max_input_chars and max_prompt_audio_bytes together allow request bodies "
                f"larger than the gateway's {limits.MAX_REQUEST_BODY_BYTES}-byte transport "
                "limit; lower one of them"
            )
        return self


class DesiredState(_Strict):
    """The whole declared configuration; one of these is stored per revision."""

    backends: dict[Name, BackendSpec] = {}
    models: dict[Name, ModelSpec] = {}
    # Where /v1/audio/speech goes when the gateway filter is down and no model header
    # was set; None means the first model in name order.
    default_model: Name | None = None
    gateway: GatewayPolicy = GatewayPolicy()
    priority_classes: dict[Name, PriorityClassSpec] = {}

    @model_validator(mode="after")
    def _keys_belong_to_one_class(self) -> DesiredState:
        seen: dict[str, str] = {}
        for name, cls in sorted(self.priority_classes.items()):
            for key_hash in cls.api_key_hashes:
                if key_hash in seen:
                    raise ValueError(
                        f"an API key is in both priority classes {seen[key_hash]!r} and {name!r}"
                    )
                seen[key_hash] = name
        return self

    def fallback_model(self) -> str | None:
        if self.default_model is not None:
            return self.default_model
        return min(self.models) if self.models else None


LOCAL_ESPEAK = Endpoint(host="127.0.0.1", port=8101)
LOCAL_COSYVOICE3 = Endpoint(host="127.0.0.1", port=8102)


def default_state(
    espeak: Endpoint = LOCAL_ESPEAK, cosyvoice3: Endpoint = LOCAL_COSYVOICE3
) -> DesiredState:
    """The config `ttsgw up` seeds on first start: one backend and one model per worker.

    The workers' /ready (engine loaded and warmed up) is the health check, not the
    article's /health (process alive), so Envoy sends nothing to a worker still loading.
    espeak is the fallback model: when the filter is down, real speech beats noise from
    the synthetic stand-in.
    """
    ready = HealthCheck(path="/ready")
    return DesiredState(
        backends={
            "espeak": BackendSpec(kind="espeak", endpoints=[espeak], health_check=ready),
            "cosyvoice3": BackendSpec(
                kind="cosyvoice3", endpoints=[cosyvoice3], health_check=ready
            ),
        },
        models={
            "espeak": ModelSpec(splits=[Split(backend="espeak", weight=100)]),
            "cosyvoice3": ModelSpec(splits=[Split(backend="cosyvoice3", weight=100)]),
        },
        default_model="espeak",
    )
