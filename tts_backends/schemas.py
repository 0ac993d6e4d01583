"""The wire schemas of a worker: OpenAI's speech request plus CosyVoice3 extensions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SpeechRequest(BaseModel):
    # The OpenAI SDK may send fields this worker does not know; they are ignored.
    model_config = ConfigDict(extra="ignore")

    model: str
    # The upper bound is the worker's setting (413 beyond it), not a schema constant.
    input: str = Field(min_length=1)
    voice: str = "alloy"
    # OpenAI defaults to mp3; a worker answers WAV unless asked, which every client decodes.
    response_format: str = "wav"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] = "audio"
    prompt_audio: str | None = None
    prompt_text: str | None = None


class VoicePublic(BaseModel):
    id: str
    name: str
    language: str


class VoicesResponse(BaseModel):
    voices: list[VoicePublic]
    openai_aliases: dict[str, str]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
