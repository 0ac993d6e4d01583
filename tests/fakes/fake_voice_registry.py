"""InMemoryVoiceRegistry: the VoiceRegistry contract in a dict, for tests without Redis.

It validates exactly like the Redis registry (``check_voice``); ``fail_with`` makes every
call raise, to test how callers handle an unreachable registry.
"""

from __future__ import annotations

import builtins
import time

from tts_backends.engines.base import ClonedVoice
from tts_backends.voice_registry import VoiceRecord, check_voice, new_voice_id


class InMemoryVoiceRegistry:
    def __init__(self) -> None:
        self.records: dict[str, VoiceRecord] = {}
        self.clips: dict[str, ClonedVoice] = {}
        self.fail_with: Exception | None = None
        self.gets = 0

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def create(self, name: str | None, prompt_wav: bytes, prompt_text: str) -> VoiceRecord:
        self._check()
        name, duration_s = check_voice(name, prompt_wav, prompt_text)
        record = VoiceRecord(new_voice_id(), name, int(time.time()), duration_s)
        self.records[record.id] = record
        self.clips[record.id] = ClonedVoice(record.id, prompt_wav, prompt_text)
        return record

    async def get(self, voice_id: str) -> ClonedVoice | None:
        self._check()
        self.gets += 1
        return self.clips.get(voice_id)

    async def record(self, voice_id: str) -> VoiceRecord | None:
        self._check()
        return self.records.get(voice_id)

    async def list(self) -> builtins.list[VoiceRecord]:
        self._check()
        return sorted(self.records.values(), key=lambda r: (r.created_at, r.id))

    async def delete(self, voice_id: str) -> bool:
        self._check()
        self.clips.pop(voice_id, None)
        return self.records.pop(voice_id, None) is not None

    async def aclose(self) -> None:
        return None
