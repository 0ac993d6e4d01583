"""The wire schemas of a worker: OpenAI's speech request plus CosyVoice3 extensions."""

from __future__ import annotations

from pydantic import BaseModel

from ttsgw_contract.speech import SpeechBody

# The contract's body, so a worker accepts exactly the fields, types and speed range
# the gateway's policy can let through. The input length is the worker's setting (413).
SpeechRequest = SpeechBody


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
