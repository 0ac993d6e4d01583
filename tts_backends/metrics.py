"""Prometheus metrics of one worker app, on a registry of its own (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class WorkerMetrics:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tts_worker_requests",
            "Speech requests by outcome (ok, bad_request, too_large, not_ready, error).",
            ["engine", "outcome"],
            registry=self.registry,
        )
        self.synthesis_seconds = Histogram(
            "tts_worker_synthesis_seconds",
            "Wall time the engine spent synthesising one request.",
            ["engine"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "tts_worker_audio_seconds",
            "Seconds of audio produced.",
            ["engine"],
            registry=self.registry,
        )

    def observe_request(self, outcome: str) -> None:
        self.requests.labels(self.engine, outcome).inc()

    def observe_synthesis(self, wall_seconds: float, audio_seconds: float) -> None:
        self.synthesis_seconds.labels(self.engine).observe(wall_seconds)
        self.audio_seconds.labels(self.engine).inc(audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
