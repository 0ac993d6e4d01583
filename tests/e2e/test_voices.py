"""The voice registry through the real gateway: Envoy -> filter -> cosyvoice3 worker -> Redis.

The stack's cosyvoice3 worker runs the synthetic engine (no weights here), which takes
registered voices like the real engine does; the registry is the stack's real Redis.
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.e2e.stack import Stack

# Read-only (no admin writes, no kills): it runs on the session's shared stack.
pytestmark = [pytest.mark.e2e, pytest.mark.shared_stack, pytest.mark.asyncio(loop_scope="session")]


def clip_b64(rate: int = 16_000, seconds: float = 2.0) -> str:
    t = np.arange(int(rate * seconds)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def assert_openai_error(resp: httpx.Response, status: int, param: str | None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert error["param"] == param
    return dict(error)


async def test_create_use_list_delete_through_envoy(stack: Stack) -> None:
    body = {
        "name": "Lin",
        "prompt_audio": clip_b64(),
        "prompt_text": "希望你以后能够做的比我还好呦。",
    }
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as gw:
        created = await gw.post("/v1/voices", json=body)
        assert created.status_code == 201, created.text
        voice = created.json()
        assert voice["object"] == "voice" and voice["name"] == "Lin"
        assert voice["duration_s"] == 2.0 and voice["id"].startswith("voice_")
        # The filter sent it to the voice-cloning model's worker, and cached nothing.
        assert created.headers["x-tts-backend"] == "cosyvoice3"
        assert "x-tts-cache" not in created.headers
        again = await gw.post("/v1/voices", json=body)
        assert again.status_code == 201 and again.json()["id"] != voice["id"]

        listed = await gw.get("/v1/voices")
        assert listed.status_code == 200
        assert {voice["id"], again.json()["id"]} <= {v["id"] for v in listed.json()["data"]}
        shown = await gw.get(f"/v1/voices/{voice['id']}", params={"model": "cosyvoice3"})
        assert shown.json() == voice

        speech = await gw.post(
            "/v1/audio/speech",
            json={"model": "cosyvoice3", "input": "Hello in a cloned voice.", "voice": voice["id"]},
        )
        assert speech.status_code == 200, speech.text
        samples, rate = sf.read(io.BytesIO(speech.content))
        assert rate == 24_000 and samples.size > 0

        deleted = await gw.delete(f"/v1/voices/{voice['id']}")
        assert deleted.json() == {"id": voice["id"], "object": "voice.deleted", "deleted": True}
        error = assert_openai_error(await gw.get(f"/v1/voices/{voice['id']}"), 404, "voice_id")
        assert error["code"] == "voice_not_found"
        gone = await gw.post(
            "/v1/audio/speech",
            json={"model": "cosyvoice3", "input": "Not any more.", "voice": voice["id"]},
        )
        assert_openai_error(gone, 400, "voice")


async def test_wrong_models_are_rejected_by_the_filter(stack: Stack) -> None:
    ok = {"prompt_audio": clip_b64(), "prompt_text": "hi"}
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as gw:
        error = assert_openai_error(
            await gw.post("/v1/voices", params={"model": "espeak"}, json=ok), 400, "model"
        )
        assert "cannot clone" in error["message"]
        missing = await gw.get("/v1/voices", params={"model": "nope"})
        assert_openai_error(missing, 404, "model")


async def test_bad_clips_are_400_from_the_worker(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as gw:
        low = {"prompt_audio": clip_b64(8_000), "prompt_text": "hi"}
        assert_openai_error(await gw.post("/v1/voices", json=low), 400, "prompt_audio")
        empty = {"prompt_audio": clip_b64(), "prompt_text": ""}
        assert_openai_error(await gw.post("/v1/voices", json=empty), 400, "prompt_text")
