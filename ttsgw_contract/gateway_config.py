"""The gateway config: the one document the control plane writes and every filter reads.

The control plane builds a ``GatewayConfig`` per revision (control_plane/gateway_contract.py)
and serves it at ``GET /api/v1/gateway-config``; the filter long-polls it and parses it
with this same model, so the two sides cannot drift.

Unknown fields are ignored and every field has a default, so the control plane can grow
the document before every filter understands it. ``schema_version`` changes only when a
field changes meaning; a filter refuses a config whose major version it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ttsgw_contract.limits import SpeechLimits

SCHEMA_VERSION = 1
# Envoy's timer on each ext_proc message. ext_proc's own default is 200 ms; a body near
# the 16 MiB transport limit takes over 500 ms just to reach the filter on a loaded box,
# and a timer that fires then sends bad input on unfiltered (503 filter_timeout). The cost
# of a longer timer is paid only while the filter hangs.
DEFAULT_MESSAGE_TIMEOUT_MS = 2000
CONFIG_PATH = "/api/v1/gateway-config"


class FilterTimeouts(BaseModel):
    """Envoy's ext_proc timers as the translator set them, so the filter's pacing follows them.

    The filter asks Envoy to extend a message's timer (override_message_timeout) before
    ``message_timeout_ms`` runs out, and never past ``max_message_timeout_ms``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_timeout_ms: int = Field(default=DEFAULT_MESSAGE_TIMEOUT_MS, ge=1)
    max_message_timeout_ms: int = Field(default=60_000, ge=1)

    @property
    def extend_after_s(self) -> float:
        """Half the message timer: late enough to be rare, early enough to beat the timer."""
        return self.message_timeout_ms / 2000

    @property
    def extended_timeout_s(self) -> float:
        return self.max_message_timeout_ms / 1000


class ModelRoute(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    backends: tuple[str, ...] = ()
    # 0 = never cache this model; an old control plane that sends neither caches nothing.
    cache_ttl_s: int = Field(default=0, ge=0)
    # Changes whenever the model's splits change, so old entries are never served after.
    cache_generation: str = "0"
    # Every backend of the model serves /v1/voices; None: an older control plane that
    # does not say, so the filter lets ?model= through and the worker decides.
    clones_voices: bool | None = None

    @property
    def cacheable(self) -> bool:
        """Cached only with one backend: a split model's answer must never cross variants."""
        return self.cache_ttl_s > 0 and len(self.backends) == 1


class CachePolicy(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = True
    max_entry_bytes: int = Field(default=8 * 1024 * 1024, ge=0)


class PriorityClass(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    level: Literal["high", "default", "low"] = "default"
    rate_limit_rps: float | None = Field(default=None, gt=0)


class AuthPolicy(BaseModel):
    """API keys (as SHA-256 hashes) to priority classes, and whether a key is required."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    require_api_keys: bool = False
    keys: Mapping[str, str] = Field(default_factory=dict)  # sha256 hex -> class name
    classes: Mapping[str, PriorityClass] = Field(default_factory=dict)
    # The value the filter stamps on requests it handled; routes that grant a priority
    # match it, so a client cannot claim one while the filter is down.
    route_secret: str = ""


class VoicePolicy(BaseModel):
    """Where the voice registry API (/v1/voices) goes when the client names no model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    default_model: str | None = None


class GatewayConfig(BaseModel):
    """One immutable version of what the filter needs to know; swapped whole, never edited."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = SCHEMA_VERSION
    version: str = Field(min_length=1)
    revision: int = 0
    models: Mapping[str, ModelRoute] = Field(default_factory=dict)
    limits: SpeechLimits = Field(default_factory=SpeechLimits)
    timeouts: FilterTimeouts = Field(default_factory=FilterTimeouts)
    cache: CachePolicy = Field(default_factory=CachePolicy)
    auth: AuthPolicy = Field(default_factory=AuthPolicy)
    voices: VoicePolicy = Field(default_factory=VoicePolicy)

    def known_models(self) -> list[str]:
        return sorted(self.models)
