"""GET /v1/queue through real Envoy: the filter answers from the control plane's live aggregate."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack

# Read-only (no admin writes, no kills): it runs on the session's shared stack.
pytestmark = [pytest.mark.e2e, pytest.mark.shared_stack, pytest.mark.asyncio(loop_scope="session")]

LEVELS = ("high", "default", "low")
# About 600 characters: a couple of seconds of synthesis on the synthetic engine here.
SENTENCE = "The gateway keeps every worker busy but never buried under its own queue. "


async def queue_view(client: httpx.AsyncClient, model: str | None = None) -> dict[str, Any]:
    response = await client.get("/v1/queue", params={"model": model} if model else None)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def test_lists_both_models_with_levels_and_numbers(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=5) as client:
        # The control plane polls the workers about once a second; wait for a first answer.
        for _ in range(100):
            body = await queue_view(client)
            if all(m["busy"] != "unknown" for m in body["models"].values()):
                break
            await asyncio.sleep(0.2)
    assert body["object"] == "queue"
    assert set(body["models"]) == {"espeak", "cosyvoice3"}
    for name, model in body["models"].items():
        assert model["busy"] in {"idle", "busy", "overloaded"}, (name, model)
        assert isinstance(model["in_flight"], int) and isinstance(model["queued"], int)
        assert set(model["levels"]) == set(LEVELS)
        for level in model["levels"].values():
            assert isinstance(level["depth"], int)
            assert level["estimated_wait_s"] is None or level["estimated_wait_s"] >= 0
        # The public view never shows where the workers are.
        assert "backends" not in model
    assert str(stack.settings.cosyvoice3_port) not in str(body)


async def test_unknown_model_is_404_in_openais_shape(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=5) as client:
        response = await client.get("/v1/queue", params={"model": "no-such-model"})
        one = await queue_view(client, "espeak")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "model_not_found"
    assert list(one["models"]) == ["espeak"]


async def test_long_requests_show_up_as_in_flight_or_queued(stack: Stack) -> None:
    async def speak(client: httpx.AsyncClient, i: int) -> int:
        text = f"Request {i}. " + SENTENCE * 8
        response = await client.post(
            "/v1/audio/speech",
            json={"model": "cosyvoice3", "input": text, "voice": "alloy", "response_format": "pcm"},
        )
        return response.status_code

    seen: dict[str, Any] | None = None
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=60) as client:
        speaking = [asyncio.create_task(speak(client, i)) for i in range(3)]
        try:
            while not all(task.done() for task in speaking):
                model = (await queue_view(client, "cosyvoice3"))["models"]["cosyvoice3"]
                depth = sum(level["depth"] for level in model["levels"].values())
                if model["in_flight"] > 0 or depth > 0:
                    seen = model
                    break
                await asyncio.sleep(0.2)
            statuses = await asyncio.gather(*speaking)
        finally:
            for task in speaking:
                task.cancel()
    # A worker may shed part of a burst (429 + Retry-After) by design; the rest must succeed.
    assert 200 in statuses and set(statuses) <= {200, 429}, statuses
    assert seen is not None, "the queue view never showed the running requests"
    assert seen["busy"] in {"busy", "overloaded"}
