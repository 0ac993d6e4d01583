"""WorkerSettings: the one configuration class of a TTS worker (flags or TTSGW_WORKER_* env)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ttsgw_contract.limits import DEFAULT_MAX_INPUT_CHARS

from .scheduler.policy import SchedulerPolicy

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
    max_input_chars: int = Field(default=DEFAULT_MAX_INPUT_CHARS, ge=1)
    # Seed of the synthetic engine's random weights, and its size ("0.5b": CosyVoice3's
    # LM parameter count, for GPU sizing runs).
    seed: int = 0
    synthetic_size: Literal["small", "0.5b"] = "small"
    warmup: bool = True
    # Pause between the pieces of a streamed response: 0 sends them as soon as they are
    # made; tests set it to make streaming through the gateway visible in time.
    stream_chunk_interval_s: float = Field(default=0.0, ge=0.0, le=5.0)
    log_level: str = "info"
    # The scheduler (docs/workers.md). Batching applies to engines that can batch
    # (synthetic); concurrency to those that cannot (espeak: one process per core by
    # default; cosyvoice3: 1, its model is not safe to share between threads).
    max_batch_size: int = Field(default=16, ge=1, le=256)
    max_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    concurrency: int | None = Field(default=None, ge=1, le=256)
    queue_limit_high: int = Field(default=64, ge=1)
    queue_limit_default: int = Field(default=256, ge=1)
    queue_limit_low: int = Field(default=256, ge=1)
    queue_timeout_high_s: float = Field(default=30.0, gt=0)
    queue_timeout_default_s: float = Field(default=20.0, gt=0)
    queue_timeout_low_s: float = Field(default=10.0, gt=0)
    max_queue_depth: int = Field(default=512, ge=1)
    aging_s: float = Field(default=5.0, ge=0.0)
    rows_beside_high: int = Field(default=0, ge=0)
    # The voice registry (POST /v1/voices) lives in Redis so every replica shares it;
    # None turns the registry off and /v1/voices answers 503 naming this setting.
    redis_url: str | None = None
    # Where spans go (a Zipkin v2 JSON endpoint, e.g. the tail-sampling relay); None: no
    # tracing SDK is installed and spans cost nothing.
    zipkin_url: str | None = None

    def scheduler_policy(self, engine: object) -> SchedulerPolicy:
        # An engine may say how many calls it takes at once (espeak: its process pool).
        concurrency = self.concurrency or int(getattr(engine, "concurrency", 1))
        return SchedulerPolicy(
            max_batch_size=self.max_batch_size,
            max_wait_s=self.max_wait_ms / 1000,
            concurrency=concurrency,
            queue_limits={
                "high": self.queue_limit_high,
                "default": self.queue_limit_default,
                "low": self.queue_limit_low,
            },
            queue_timeouts_s={
                "high": self.queue_timeout_high_s,
                "default": self.queue_timeout_default_s,
                "low": self.queue_timeout_low_s,
            },
            max_queue_depth=self.max_queue_depth,
            aging_s=self.aging_s,
            rows_beside_high=self.rows_beside_high,
        )

    @property
    def engine_name(self) -> EngineName:
        return self.engine or DEFAULT_ENGINES[self.kind]

    @property
    def listen_port(self) -> int:
        return DEFAULT_PORTS[self.kind] if self.port is None else self.port
