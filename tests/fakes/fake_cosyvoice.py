"""A FAKE `cosyvoice` package (no CosyVoice3 weights here): real signatures, records calls.

`install()` puts `cosyvoice`, `cosyvoice.cli` and `cosyvoice.cli.cosyvoice` into
sys.modules; `FakeAutoModel.instances` holds every model built, each with `.calls`.
It yields `{'tts_speech': tensor[1, N]}` like upstream, N = 240 samples per character
of `tts_text`, so tests can check which text reached the model. Registered speakers live
in `frontend.spk2info`, where upstream keeps them. `fail_next` makes the next inference
call raise while its output is consumed (how a CUDA OOM surfaces upstream).
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace
from typing import Any, ClassVar

import torch

SAMPLES_PER_CHAR = 240


class FakeAutoModel:
    instances: ClassVar[list[FakeAutoModel]] = []

    def __init__(self, model_dir: str, load_trt: bool = False, fp16: bool = False) -> None:
        self.model_dir = model_dir
        self.sample_rate = 24_000
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.frontend = SimpleNamespace(spk2info={})
        self.spk2info: dict[str, dict[str, Any]] = self.frontend.spk2info
        self.fail_next: BaseException | None = None
        FakeAutoModel.instances.append(self)

    def add_zero_shot_spk(self, prompt_text: str, prompt_wav: Any, zero_shot_spk_id: str) -> bool:
        assert zero_shot_spk_id != ""
        self.calls.append(
            (
                "add_zero_shot_spk",
                {
                    "prompt_text": prompt_text,
                    "prompt_wav": _read(prompt_wav),
                    "zero_shot_spk_id": zero_shot_spk_id,
                },
            )
        )
        self.spk2info[zero_shot_spk_id] = {"prompt_text": prompt_text}
        return True

    def _speech(self, tts_text: str, stream: bool, speed: float) -> Any:
        # Upstream: speed != 1.0 only works without streaming.
        assert not (stream and speed != 1.0), "speed change needs stream=False"
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        yield {"tts_speech": torch.full((1, SAMPLES_PER_CHAR * len(tts_text)), 0.25)}

    def inference_zero_shot(
        self,
        tts_text,
        prompt_text,
        prompt_wav,
        zero_shot_spk_id="",
        stream=False,
        speed=1.0,
        text_frontend=True,
    ):
        self.calls.append(
            (
                "inference_zero_shot",
                dict(
                    tts_text=tts_text,
                    prompt_text=prompt_text,
                    prompt_wav=_read(prompt_wav),
                    zero_shot_spk_id=zero_shot_spk_id,
                    stream=stream,
                    speed=speed,
                ),
            )
        )
        if zero_shot_spk_id:
            assert zero_shot_spk_id in self.spk2info, zero_shot_spk_id
        return self._speech(tts_text, stream, speed)

    def inference_cross_lingual(
        self, tts_text, prompt_wav, zero_shot_spk_id="", stream=False, speed=1.0, text_frontend=True
    ):
        self.calls.append(
            (
                "inference_cross_lingual",
                dict(
                    tts_text=tts_text,
                    prompt_wav=_read(prompt_wav),
                    zero_shot_spk_id=zero_shot_spk_id,
                    stream=stream,
                    speed=speed,
                ),
            )
        )
        return self._speech(tts_text, stream, speed)

    def inference_instruct2(
        self,
        tts_text,
        instruct_text,
        prompt_wav,
        zero_shot_spk_id="",
        stream=False,
        speed=1.0,
        text_frontend=True,
    ):
        self.calls.append(
            (
                "inference_instruct2",
                dict(
                    tts_text=tts_text,
                    instruct_text=instruct_text,
                    prompt_wav=_read(prompt_wav),
                    zero_shot_spk_id=zero_shot_spk_id,
                    stream=stream,
                    speed=speed,
                ),
            )
        )
        return self._speech(tts_text, stream, speed)


def _read(prompt_wav: Any) -> Any:
    """Record what the model would read: a path as-is, a file object's bytes."""
    if hasattr(prompt_wav, "read"):
        return prompt_wav.read()
    return prompt_wav


def install(monkeypatch: Any) -> type[FakeAutoModel]:
    FakeAutoModel.instances.clear()
    pkg = types.ModuleType("cosyvoice")
    cli = types.ModuleType("cosyvoice.cli")
    mod = types.ModuleType("cosyvoice.cli.cosyvoice")
    mod.AutoModel = FakeAutoModel  # type: ignore[attr-defined]
    pkg.cli = cli  # type: ignore[attr-defined]
    cli.cosyvoice = mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cosyvoice", pkg)
    monkeypatch.setitem(sys.modules, "cosyvoice.cli", cli)
    monkeypatch.setitem(sys.modules, "cosyvoice.cli.cosyvoice", mod)
    return FakeAutoModel
