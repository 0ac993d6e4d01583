"""The GPU memory guard: a CUDA OOM fails one request with 503 and the worker stays ready.

No GPU here, so the OOM is raised by the FAKE cosyvoice model (tests/fakes) as torch's
real ``OutOfMemoryError``, and CUDA's ``empty_cache`` is replaced by a counter; the
gpu-marked test at the end makes a real OOM on a CUDA device when there is one.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from tests.fakes import fake_cosyvoice
from tts_backends.engines.base import SynthesisRequest
from tts_backends.engines.cosyvoice3 import CosyVoice3Engine
from tts_backends.engines.gpu_memory import is_out_of_memory, oom_guard
from tts_backends.errors import EngineOutOfMemoryError
from tts_backends.server import create_server
from tts_backends.settings import WorkerSettings

OOM_MESSAGE = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.11 GiB total)"


@pytest.fixture
def emptied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts torch.cuda.empty_cache() calls, pretending CUDA is there (it is not here)."""
    calls: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    return calls


@pytest.fixture
async def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CosyVoice3Engine:
    fake_cosyvoice.install(monkeypatch)
    voices = tmp_path / "voices"
    voices.mkdir()
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16_000, dtype=np.float32), 16_000, format="WAV")
    (voices / "lin.wav").write_bytes(buf.getvalue())
    (voices / "lin.txt").write_text("你好。", encoding="utf-8")
    return CosyVoice3Engine(model_dir=tmp_path, voices_dir=voices)


def test_what_counts_as_out_of_memory() -> None:
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError
    assert is_out_of_memory(torch.OutOfMemoryError(OOM_MESSAGE))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())


def test_the_guard_translates_oom_and_frees_memory(emptied: list[int]) -> None:
    with pytest.raises(EngineOutOfMemoryError) as info, oom_guard("e"):
        raise torch.OutOfMemoryError(OOM_MESSAGE)
    assert info.value.status == 503 and info.value.code == "gpu_out_of_memory"
    # The original error is not chained: its frames would keep the tensors alive.
    assert info.value.__cause__ is None
    assert emptied == [1]


def test_the_guard_lets_other_errors_through(emptied: list[int]) -> None:
    with pytest.raises(ValueError, match="nope"), oom_guard("e"):
        raise ValueError("nope")
    assert emptied == []


async def test_engine_oom_fails_one_request_then_recovers(engine, emptied) -> None:
    await engine.load()
    model = fake_cosyvoice.FakeAutoModel.instances[-1]
    model.fail_next = torch.OutOfMemoryError(OOM_MESSAGE)
    with pytest.raises(EngineOutOfMemoryError):
        await engine.synthesize(SynthesisRequest(text="Hi.", voice="lin"))
    assert emptied == [1]
    out = await engine.synthesize(SynthesisRequest(text="Hi.", voice="lin"))
    assert out.size == 3 * fake_cosyvoice.SAMPLES_PER_CHAR
    assert engine.ready


@pytest.fixture
async def worker(engine: CosyVoice3Engine) -> AsyncIterator[httpx.AsyncClient]:
    server, _ = create_server(engine, WorkerSettings(port=0, log_level="warning"))
    async with server.running(), httpx.AsyncClient(base_url=server.url) as client:
        yield client


async def test_worker_answers_503_then_200_and_stays_ready(worker, emptied) -> None:
    speech = {"model": "cosyvoice3", "input": "你好。", "voice": "lin"}
    assert (await worker.post("/v1/audio/speech", json=speech)).status_code == 200
    fake_cosyvoice.FakeAutoModel.instances[-1].fail_next = torch.OutOfMemoryError(OOM_MESSAGE)

    failed = await worker.post("/v1/audio/speech", json=speech)
    assert failed.status_code == 503, failed.text
    error = failed.json()["error"]
    assert error["code"] == "gpu_out_of_memory" and error["type"] == "service_unavailable"
    assert "Traceback" not in error["message"] and "20.00 GiB" not in error["message"]
    assert emptied == [1]

    assert (await worker.get("/ready")).status_code == 200
    again = await worker.post("/v1/audio/speech", json=speech)
    assert again.status_code == 200 and again.headers["content-type"] == "audio/wav"
    assert (await worker.get("/ready")).status_code == 200
    assert (await worker.get("/health")).status_code == 200


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_cuda_oom_is_translated_and_its_memory_returned() -> None:
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    _, total = torch.cuda.mem_get_info()

    def step() -> None:
        # Held only by this frame, as a model's activations are when the OOM strikes.
        scratch = torch.ones(256 * 1024 * 1024, dtype=torch.uint8, device="cuda")
        # Twice the device's memory: CUDA refuses it whatever else is running.
        torch.empty(2 * total, dtype=torch.uint8, device="cuda") + scratch[0]

    with pytest.raises(EngineOutOfMemoryError), oom_guard("gpu-test"):
        step()
    # The failed request's tensors are gone and their blocks went back to the driver.
    assert torch.cuda.memory_allocated() == allocated
    assert torch.cuda.memory_reserved() <= reserved
    assert torch.ones(1024, device="cuda").sum().item() == 1024
