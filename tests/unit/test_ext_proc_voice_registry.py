"""Routing the voice registry API (/v1/voices) in the filter, and the contract fields it uses."""

from __future__ import annotations

import pytest
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import HttpHeaders, ProcessingRequest
from prometheus_client import CollectorRegistry

from control_plane.domain import BackendSpec, ModelSpec, Split, default_state
from control_plane.gateway_contract import gateway_config
from gateway.cache.memory import MemoryCacheStore
from gateway.errors import InvalidRequestError, ModelNotFoundError, UnauthorizedError
from gateway.ext_proc.metrics import CacheMetrics
from gateway.ext_proc.passthrough import PassthroughProcessor
from gateway.ext_proc.processor import Outcome, RequestHead
from gateway.ext_proc.response_cache import ResponseCache
from gateway.ext_proc.router import Endpoint, Router, classify
from gateway.ext_proc.voices_processor import VoiceRegistryProcessor
from ttsgw_contract.gateway_config import GatewayConfig
from ttsgw_contract.modes import PASSTHROUGH_MODE


def config_of(state=None, **policy) -> GatewayConfig:
    state = state or default_state()
    if policy:
        state = state.model_copy(update={"gateway": state.gateway.model_copy(update=policy)})
    return GatewayConfig.model_validate(gateway_config(state, revision=1))


async def run(config: GatewayConfig | None, method: str, path: str, extra=None):
    pairs = {":method": method, ":path": path, ":authority": "gw", **(extra or {})}
    request = ProcessingRequest(
        request_headers=HttpHeaders(
            headers=HeaderMap(
                headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
            )
        )
    )
    # With a response cache configured: the registry must still never be cached.
    cache = ResponseCache(MemoryCacheStore(), CacheMetrics(CollectorRegistry()))
    processor = Router(cache=cache).select(RequestHead.parse(request.request_headers), config)
    response = await processor.request_headers(request.request_headers)
    common = response.request_headers.response
    stamped = {
        h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers
    }
    return response, processor, stamped


def test_contract_marks_cloning_models_and_picks_a_default() -> None:
    config = config_of()
    assert config.models["cosyvoice3"].clones_voices is True
    assert config.models["espeak"].clones_voices is False
    assert config.voices.default_model == "cosyvoice3"

    state = default_state()
    backends = {**state.backends, "cv-b": state.backends["cosyvoice3"]}
    models = {
        # A parked (weight 0) espeak split cannot receive requests, so it does not count.
        "a-canary": ModelSpec(
            splits=[Split(backend="cosyvoice3", weight=90), Split(backend="espeak", weight=0)]
        ),
        "mixed": ModelSpec(
            splits=[Split(backend="cosyvoice3", weight=50), Split(backend="espeak", weight=50)]
        ),
        "two-cv": ModelSpec(
            splits=[Split(backend="cosyvoice3", weight=50), Split(backend="cv-b", weight=50)]
        ),
    }
    config = config_of(state.model_copy(update={"backends": backends, "models": models}))
    assert {n: m.clones_voices for n, m in config.models.items()} == {
        "a-canary": True,
        "mixed": False,
        "two-cv": True,
    }
    assert config.voices.default_model == "a-canary"


def test_contract_without_a_cloning_backend_has_no_voice_model() -> None:
    state = default_state()
    state = state.model_copy(
        update={
            "backends": {"espeak": state.backends["espeak"]},
            "models": {"espeak": state.models["espeak"]},
        }
    )
    assert config_of(state).voices.default_model is None


def test_an_older_contract_still_parses() -> None:
    config = GatewayConfig.model_validate({"version": "v", "models": {"m": {}}})
    assert config.models["m"].clones_voices is None and config.voices.default_model is None


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("POST", "/v1/voices", Endpoint.VOICE_REGISTRY),
        ("GET", "/v1/voices", Endpoint.VOICE_REGISTRY),
        ("GET", "/v1/voices/voice_0123456789ab", Endpoint.VOICE_REGISTRY),
        ("DELETE", "/v1/voices/voice_0123456789ab", Endpoint.VOICE_REGISTRY),
        ("GET", "/v1/voicesx", Endpoint.OTHER),
        ("GET", "/v1/audio/voices", Endpoint.VOICES),
    ],
)
def test_classify(method: str, path: str, endpoint: Endpoint) -> None:
    assert classify(method, path) is endpoint


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_without_model_it_goes_to_the_voice_model_unbuffered(method: str) -> None:
    path = "/v1/voices" if method == "POST" else "/v1/voices/voice_0123456789ab"
    response, processor, stamped = await run(config_of(), method, path, {"x-tts-model": "espeak"})
    assert stamped["x-tts-model"] == "cosyvoice3"
    assert stamped["x-tts-priority"] == "default"
    assert response.request_headers.response.clear_route_cache
    # The body streams to the worker: never buffered for the filter, never cached (the
    # cache asks for response headers; this mode does not).
    assert response.mode_override == PASSTHROUGH_MODE
    assert isinstance(processor, VoiceRegistryProcessor)
    assert processor.outcome is Outcome.ROUTED and processor.model == "cosyvoice3"


async def test_model_query_parameter_picks_the_model() -> None:
    state = default_state()
    state = state.model_copy(
        update={
            "backends": {**state.backends, "cv-b": state.backends["cosyvoice3"]},
            "models": {**state.models, "cv-b": ModelSpec(splits=[Split(backend="cv-b", weight=1)])},
        }
    )
    _, processor, stamped = await run(config_of(state), "GET", "/v1/voices?model=cv-b")
    assert stamped["x-tts-model"] == "cv-b" and processor.model == "cv-b"


async def test_a_model_that_cannot_clone_is_400_naming_model() -> None:
    with pytest.raises(InvalidRequestError) as err:
        await run(config_of(), "POST", "/v1/voices?model=espeak")
    assert err.value.param == "model" and "model=cosyvoice3" in err.value.message


async def test_an_unknown_model_is_404() -> None:
    with pytest.raises(ModelNotFoundError):
        await run(config_of(), "GET", "/v1/voices?model=nope")


async def test_no_cloning_model_is_400() -> None:
    state = default_state()
    state = state.model_copy(
        update={
            "backends": {"espeak": state.backends["espeak"]},
            "models": {"espeak": state.models["espeak"]},
        }
    )
    with pytest.raises(InvalidRequestError, match="No model can clone voices"):
        await run(config_of(state), "GET", "/v1/voices")


async def test_an_older_control_plane_lets_the_named_model_through() -> None:
    config = GatewayConfig.model_validate({"version": "v", "models": {"m": {}}})
    _, _, stamped = await run(config, "GET", "/v1/voices?model=m")
    assert stamped["x-tts-model"] == "m"


async def test_api_keys_apply_as_for_speech() -> None:
    with pytest.raises(UnauthorizedError):
        await run(config_of(require_api_keys=True), "POST", "/v1/voices")


async def test_before_the_first_config_it_passes_through() -> None:
    response, processor, stamped = await run(None, "GET", "/v1/voices")
    assert isinstance(processor, PassthroughProcessor)
    assert stamped == {} and processor.outcome is Outcome.PASSTHROUGH
    assert response.mode_override == PASSTHROUGH_MODE


def test_openai_compatible_backends_do_not_clone() -> None:
    spec = BackendSpec(endpoints=[{"host": "h", "port": 1}])
    assert spec.kind == "openai-compatible"
    state = default_state()
    state = state.model_copy(
        update={
            "backends": {"oa": spec},
            "models": {"oa": ModelSpec(splits=[Split(backend="oa", weight=1)])},
            "default_model": None,
        }
    )
    assert config_of(state).models["oa"].clones_voices is False
