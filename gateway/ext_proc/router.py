"""Which processor a stream gets: chosen once, from the method and path of its request headers."""

from __future__ import annotations

import enum

from gateway.ext_proc.admission import Admission
from gateway.ext_proc.passthrough import PassthroughProcessor
from gateway.ext_proc.processor import Processor, RequestHead
from gateway.ext_proc.queue_processor import QueueProcessor, QueueView
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.speech_processor import SpeechProcessor
from gateway.ext_proc.tracing import StreamTrace
from gateway.ext_proc.voices_processor import VoiceRegistryProcessor, VoicesProcessor
from ttsgw_contract.gateway_config import GatewayConfig

SPEECH_PATH = "/v1/audio/speech"
VOICES_PATH = "/v1/audio/voices"
# The voice registry: POST/GET /v1/voices, GET/DELETE /v1/voices/{id}.
VOICE_REGISTRY_PATH = "/v1/voices"
# How busy each model is; the filter answers it itself (queue_processor.py).
QUEUE_PATH = "/v1/queue"


class Endpoint(enum.Enum):
    """The gateway API calls the filter treats specially; everything else passes through."""

    SPEECH = "speech"
    VOICES = "voices"
    VOICE_REGISTRY = "voice_registry"
    QUEUE = "queue"
    OTHER = "other"


def classify(method: str, path: str) -> Endpoint:
    if path == SPEECH_PATH and method == "POST":
        return Endpoint.SPEECH
    if path == VOICES_PATH and method == "GET":
        return Endpoint.VOICES
    if path == QUEUE_PATH and method == "GET":
        return Endpoint.QUEUE
    if path == VOICE_REGISTRY_PATH or path.startswith(VOICE_REGISTRY_PATH + "/"):
        return Endpoint.VOICE_REGISTRY
    return Endpoint.OTHER


class Router:
    """Builds each stream's processor over the parts every stream shares.

    ``cache`` None: speech responses never reach the filter. ``queue_view`` None:
    GET /v1/queue passes through (Envoy's 404).
    """

    def __init__(
        self,
        *,
        cache: ResponseCache | None = None,
        queue_view: QueueView | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._cache = cache
        self._queue_view = queue_view
        # Rate limits are per class and per filter process, so one Admission for all.
        self._admission = admission or Admission()

    def select(
        self, head: RequestHead, config: GatewayConfig | None, trace: StreamTrace | None = None
    ) -> Processor:
        endpoint = classify(head.method, head.path)
        if endpoint is Endpoint.SPEECH:
            # Even without a config: the body is still validated (speech_processor.py).
            return SpeechProcessor(head, config, self._admission, self._cache, trace)
        if endpoint is Endpoint.QUEUE and self._queue_view is not None:
            return QueueProcessor(head, config, self._admission, self._queue_view)
        if config is not None and endpoint is Endpoint.VOICES:
            return VoicesProcessor(head, config, self._admission)
        if config is not None and endpoint is Endpoint.VOICE_REGISTRY:
            return VoiceRegistryProcessor(head, config, self._admission)
        return PassthroughProcessor(head, config, self._admission)
