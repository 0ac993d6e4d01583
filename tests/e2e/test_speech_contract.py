"""Filter and workers agree on the speech schema: no speed or text one accepts and the other fails.

Through real Envoy, the filter and real workers: the edges of the speed range the policy
allows reach the engines and come back as audio, a step past them gets the filter's 400
(the worker never sees it), and text no encoder accepts is a 400 naming its field, not a
5xx from a filter that failed open.
"""

from __future__ import annotations

import io

import httpx
import pytest
import soundfile

from tests.e2e.stack import Stack
from ttsgw_contract.headers import BACKEND_HEADER, ENGINE_HEADER
from ttsgw_contract.limits import MAX_SPEED, MIN_SPEED

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SPEECH = "/v1/audio/speech"
JSON = {"content-type": "application/json"}
MODELS = ("espeak", "cosyvoice3")


async def policy_speeds(stack: Stack) -> tuple[float, float]:
    async with stack.admin_client() as admin:
        policy = (await admin.get("/api/v1/gateway-policy")).json()
    return float(policy["min_speed"]), float(policy["max_speed"])


def worker_url(stack: Stack, model: str) -> str:
    port = stack.settings.espeak_port if model == "espeak" else stack.settings.cosyvoice3_port
    return f"http://127.0.0.1:{port}"


def seconds(response: httpx.Response) -> float:
    audio, rate = soundfile.read(io.BytesIO(response.content))
    return float(len(audio) / rate)


def assert_gateway_400(response: httpx.Response, param: str) -> dict[str, object]:
    """An OpenAI-shaped 400 that the filter answered itself."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    # Every worker response carries its engine header; the filter's answers never do.
    assert ENGINE_HEADER not in response.headers
    assert BACKEND_HEADER not in response.headers
    error = dict(response.json()["error"])
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    return error


async def test_the_default_policy_allows_all_the_engines_can_do(stack: Stack) -> None:
    assert await policy_speeds(stack) == (MIN_SPEED, MAX_SPEED)


@pytest.mark.parametrize("model", MODELS)
async def test_the_edges_of_the_policy_reach_the_engine(stack: Stack, model: str) -> None:
    low, high = await policy_speeds(stack)
    lengths = {}
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        for speed in (low, high):
            body = {"model": model, "input": "The speed contract holds.", "speed": speed}
            response = await client.post(SPEECH, json=body)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "audio/wav"
            assert response.headers[BACKEND_HEADER] == model
            assert ENGINE_HEADER in response.headers
            lengths[speed] = seconds(response)
    # The speed reached the engine, not just the schema: slower speech is longer.
    assert lengths[low] > lengths[high] > 0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("step", [-0.01, 0.01])
async def test_a_step_past_the_policy_is_the_filters_400(
    stack: Stack, model: str, step: float
) -> None:
    low, high = await policy_speeds(stack)
    speed = round((low if step < 0 else high) + step, 6)
    body = {"model": model, "input": "Too far.", "speed": speed}
    async with httpx.AsyncClient(timeout=30) as client:
        through_gateway = await client.post(stack.gateway + SPEECH, json=body)
        direct = await client.post(worker_url(stack, model) + SPEECH, json=body)
    error = assert_gateway_400(through_gateway, "speed")
    assert error["message"] == f"'speed' must be between {low:g} and {high:g}."
    # The worker refuses it too: past the default policy is past what the engines can do.
    assert direct.status_code == 400, direct.text
    assert direct.json()["error"]["param"] == "speed"


LONE_SURROGATE_BODIES = [
    (b'{"model": "espeak", "input": "\\ud800", "voice": "alloy"}', "input"),
    (b'{"model": "espeak", "input": "\xed\xa0\x80", "voice": "alloy"}', "input"),
    (b'{"model": "cosyvoice3", "input": "hi", "voice": "alloy\\udfff"}', "voice"),
    (b'{"model": "espeak", "input": "hi", "instructions": "\\udc00"}', "instructions"),
]


@pytest.mark.parametrize(("body", "param"), LONE_SURROGATE_BODIES)
async def test_unencodable_text_is_a_400_naming_the_field(
    stack: Stack, body: bytes, param: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        response = await client.post(SPEECH, content=body, headers=JSON)
    error = assert_gateway_400(response, param)
    assert error["code"] == "invalid_text"
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("field", ["input", "instructions"])
async def test_a_worker_refuses_unencodable_text_the_same_way(
    stack: Stack, model: str, field: str
) -> None:
    # Before the shared schema a worker passed a lone surrogate in `instructions` to its
    # engine (200), and refused one in `input` only by accident of its length check.
    fields = {"model": f'"{model}"', "input": '"hello"', field: '"\\ud800"'}
    body = ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()
    async with httpx.AsyncClient(base_url=worker_url(stack, model), timeout=30) as client:
        response = await client.post(SPEECH, content=body, headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        field,
        "invalid_text",
    )


async def test_a_narrowed_policy_is_the_filters_and_the_worker_keeps_its_range(
    stack: Stack,
) -> None:
    async with stack.admin_client() as admin:
        policy = (await admin.get("/api/v1/gateway-policy")).json()
        narrowed = {**policy, "min_speed": 0.5, "max_speed": 2.0}
        r = await admin.put("/api/v1/gateway-policy?wait=acked&timeout_s=10", json=narrowed)
        assert r.status_code == 200, r.text
        try:
            body = {"model": "espeak", "input": "Quick.", "speed": 3.0}
            async with httpx.AsyncClient(timeout=30) as client:
                # The filter learns the policy by long poll; wait until it applies it.
                for _ in range(100):
                    through_gateway = await client.post(stack.gateway + SPEECH, json=body)
                    if through_gateway.status_code != 200:
                        break
                direct = await client.post(worker_url(stack, "espeak") + SPEECH, json=body)
            error = assert_gateway_400(through_gateway, "speed")
            assert error["message"] == "'speed' must be between 0.5 and 2."
            assert direct.status_code == 200, direct.text
        finally:
            r = await admin.put("/api/v1/gateway-policy?wait=acked&timeout_s=10", json=policy)
            assert r.status_code == 200, r.text
