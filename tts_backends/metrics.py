"""Prometheus metrics of one worker app, on a registry of its own (never the global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
RTF_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)


class WorkerMetrics:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tts_worker_requests",
            "Speech requests by outcome (ok, bad_request, too_large, shed, not_ready, "
            "cancelled, error).",
            ["engine", "outcome"],
            registry=r,
        )
        self.synthesis_seconds = Histogram(
            "tts_worker_synthesis_seconds",
            "Wall time from the start of synthesis to the last sample of one request.",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "tts_worker_audio_seconds", "Seconds of audio produced.", ["engine"], registry=r
        )
        self.queue_wait_seconds = Histogram(
            "tts_worker_queue_wait_seconds",
            "Time a request waited in the scheduler's queue before it started.",
            ["engine", "level"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_chunk_seconds = Histogram(
            "tts_worker_first_chunk_seconds",
            "Time from arrival to the first audio chunk of a request.",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.real_time_factor = Histogram(
            "tts_worker_real_time_factor",
            "Synthesis wall time divided by the audio's duration (below 1 is faster than "
            "real time).",
            ["engine"],
            buckets=RTF_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tts_worker_batch_size",
            "Requests per engine call, by stage.",
            ["engine", "stage"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.shed = Counter(
            "tts_worker_shed",
            "Requests the scheduler refused with 429, by level and reason "
            "(queue_full, evicted, wait_too_long, queue_timeout).",
            ["engine", "level", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "tts_worker_queue_depth",
            "Requests waiting in the scheduler's queue, by priority level.",
            ["engine", "level"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tts_worker_in_flight",
            "Requests the engine is working on now.",
            ["engine"],
            registry=r,
        )
        self.gpu_memory_bytes = Gauge(
            "tts_worker_gpu_memory_bytes",
            "CUDA memory of this worker's device (allocated, reserved); absent on CPU.",
            ["engine", "kind"],
            registry=r,
        )

    def observe_request(self, outcome: str) -> None:
        self.requests.labels(self.engine, outcome).inc()

    def observe_synthesis(self, wall_seconds: float, audio_seconds: float) -> None:
        self.synthesis_seconds.labels(self.engine).observe(wall_seconds)
        self.audio_seconds.labels(self.engine).inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.labels(self.engine).observe(wall_seconds / audio_seconds)

    def track_queue(self, depth_by_level: Callable[[], dict[str, int]], levels: list[str]) -> None:
        """Read queue depths and in-flight at scrape time, so they are never stale."""
        for level in levels:

            def depth(level: str = level) -> float:
                return depth_by_level().get(level, 0)

            self.queue_depth.labels(self.engine, level).set_function(depth)

    def track_gpu_memory(self, read: Callable[[], dict[str, int]]) -> None:
        """CUDA memory by kind (allocated, reserved), read at scrape time."""
        for kind in ("allocated", "reserved"):

            def value(kind: str = kind) -> float:
                return read().get(kind, 0)

            self.gpu_memory_bytes.labels(self.engine, kind).set_function(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
