"""The /v1/voices API of a worker: register a cloned voice, list, show and delete them.

Errors are raised as WorkerErrors and reach the wire through the app's one handler, so
these routes belong in an app built by ``create_app``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from .audio import decode_prompt_audio
from .errors import VoiceNotFoundError, VoiceRegistryUnavailableError
from .voice_registry import REDIS_URL_SETTING, VoiceRecord, VoiceRegistry

VOICES_PATH = "/v1/voices"


class VoiceCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    prompt_audio: str = Field(min_length=1)
    prompt_text: str
    # The gateway routes /v1/voices by `?model=`; a body field is accepted and ignored.
    model: str | None = None


class VoicePublic(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    name: str | None
    created_at: int
    duration_s: float

    @classmethod
    def of(cls, record: VoiceRecord) -> VoicePublic:
        return cls(
            id=record.id,
            name=record.name,
            created_at=record.created_at,
            duration_s=record.duration_s,
        )


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoicePublic]


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["voice.deleted"] = "voice.deleted"
    deleted: bool = True


def voice_router(registry: VoiceRegistry | None) -> APIRouter:
    """The /v1/voices routes over `registry`; without one, each answers 503 naming the setting."""

    def require_registry() -> VoiceRegistry:
        if registry is None:
            raise VoiceRegistryUnavailableError(
                f"This worker has no voice registry; set {REDIS_URL_SETTING} to a Redis URL "
                "shared by every worker."
            )
        return registry

    # A default, not an Annotated alias: this module's annotations are strings, resolved
    # at module level, where a closure's alias is not visible.
    registry_dep = Depends(require_registry)
    router = APIRouter(prefix=VOICES_PATH, tags=["voices"])

    @router.post("", status_code=201)
    async def create_voice(body: VoiceCreate, reg: VoiceRegistry = registry_dep) -> VoicePublic:
        wav = decode_prompt_audio(body.prompt_audio)
        return VoicePublic.of(await reg.create(body.name, wav, body.prompt_text))

    @router.get("")
    async def list_voices(reg: VoiceRegistry = registry_dep) -> VoiceList:
        return VoiceList(data=[VoicePublic.of(r) for r in await reg.list()])

    @router.get("/{voice_id}")
    async def get_voice(voice_id: str, reg: VoiceRegistry = registry_dep) -> VoicePublic:
        record = await reg.record(voice_id)
        if record is None:
            raise _not_found(voice_id)
        return VoicePublic.of(record)

    @router.delete("/{voice_id}")
    async def delete_voice(voice_id: str, reg: VoiceRegistry = registry_dep) -> VoiceDeleted:
        if not await reg.delete(voice_id):
            raise _not_found(voice_id)
        return VoiceDeleted(id=voice_id)

    return router


def _not_found(voice_id: str) -> VoiceNotFoundError:
    return VoiceNotFoundError(f"No voice with id {voice_id!r}. See GET {VOICES_PATH}.")
