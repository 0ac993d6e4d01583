"""GPU-only worker checks: the synthetic engine on CUDA, and real CosyVoice3 when weights exist."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_backends.engines.base import SynthesisRequest

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
async def test_synthetic_engine_on_cuda_matches_its_contract() -> None:
    from tts_backends.engines.synthetic import SyntheticEngine
    from tts_backends.engines.synthetic_model import token_count

    engine = SyntheticEngine(device="cuda")
    await engine.load()
    assert engine.device.type == "cuda"
    assert next(engine._model.parameters()).is_cuda  # type: ignore[union-attr]
    req = SynthesisRequest(text="Hello from the GPU.", voice="synthetic-1")
    a = await engine.synthesize(req)
    b = await engine.synthesize(req)
    assert a.dtype == np.float32 and a.size == token_count(19, 1.0) * 2 * 480
    assert 0.1 < np.max(np.abs(a)) <= 1.0
    # Seeded sampling: the same request gives the same samples (cuDNN may differ in ulps).
    assert np.allclose(a, b, atol=1e-4)


@pytest.mark.skipif(
    not os.environ.get("TTSGW_COSYVOICE3_MODEL_DIR"),
    reason="set TTSGW_COSYVOICE3_MODEL_DIR to a Fun-CosyVoice3 model dir to run",
)
async def test_real_cosyvoice3_speaks() -> None:
    from tts_backends.engines.cosyvoice3 import CosyVoice3Engine

    model_dir = Path(os.environ["TTSGW_COSYVOICE3_MODEL_DIR"])
    voices_dir = os.environ.get("TTSGW_COSYVOICE3_VOICES_DIR")
    engine = CosyVoice3Engine(model_dir=model_dir, voices_dir=voices_dir)
    await engine.load()
    assert engine.sample_rate == 24_000
    if not engine.voices():
        pytest.skip("set TTSGW_COSYVOICE3_VOICES_DIR to <voice>.wav + <voice>.txt pairs")
    voice = engine.voices()[0].id
    out = await engine.synthesize(SynthesisRequest(text="你好，欢迎使用语音网关。", voice=voice))
    assert out.dtype == np.float32
    assert 0.5 < out.size / engine.sample_rate < 15
    assert np.max(np.abs(out)) > 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
async def test_a_cuda_worker_reports_its_gpu_memory() -> None:
    from tts_backends.app import create_app
    from tts_backends.engines.synthetic import SyntheticEngine
    from tts_backends.settings import WorkerSettings

    engine = SyntheticEngine(device="cuda")
    await engine.load()
    app = create_app(engine, WorkerSettings(kind="cosyvoice3"))
    text = app.state.metrics.render().decode()
    assert 'tts_worker_gpu_memory_bytes{engine="synthetic",kind="allocated"}' in text
