"""WorkerSettings: the one configuration class of a TTS worker (flags or TTSGW_WORKER_* env)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

WorkerKind = Literal["espeak", "cosyvoice3"]
EngineName = Literal["espeak", "synthetic", "cosyvoice3"]

DEFAULT_PORTS: dict[str, int] = {"espeak": 8101, "cosyvoice3": 8102}
# The cosyvoice3 worker defaults to the weight-free stand-in: no weights ship with the repo.
DEFAULT_ENGINES: dict[str, EngineName] = {"espeak": "espeak", "cosyvoice3": "synthetic"}


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTSGW_WORKER_", extra="ignore")

    kind: WorkerKind = "espeak"
    engine: EngineName | None = None
    model_dir: Path | None = None
    voices_dir: Path | None = None
    host: str = "127.0.0.1"
    # None means the kind's default port; 0 asks the OS for a free one (tests).
    port: int | None = Field(default=None, ge=0, le=65535)
    device: Literal["cpu", "cuda"] = "cpu"
    max_input_chars: int = Field(default=4096, ge=1)
    # Seed of the synthetic engine's random weights.
    seed: int = 0
    warmup: bool = True
    # Pause between the pieces of a streamed response. Engines synthesise whole
    # utterances today, so 0 sends them as fast as the client reads; tests set it to make
    # streaming through the gateway visible in time.
    stream_chunk_interval_s: float = Field(default=0.0, ge=0.0, le=5.0)
    log_level: str = "info"

    @property
    def engine_name(self) -> EngineName:
        return self.engine or DEFAULT_ENGINES[self.kind]

    @property
    def listen_port(self) -> int:
        return DEFAULT_PORTS[self.kind] if self.port is None else self.port
