"""`ttsgw worker ...`: parse flags into WorkerSettings, build the chosen engine, serve it."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from .engines.base import Engine
from .errors import StartupError
from .settings import WorkerSettings
from .tracing import LOG_FORMAT, TracingMiddleware, install_log_ids, setup_worker_tracing


def build_parser() -> argparse.ArgumentParser:
    # Every default is None so unset flags fall through to TTSGW_WORKER_* and the class.
    p = argparse.ArgumentParser(prog="ttsgw worker", description="Run a TTS worker.")
    p.add_argument("kind", choices=["espeak", "cosyvoice3"], help="which worker to run")
    p.add_argument("--engine", choices=["espeak", "synthetic", "cosyvoice3"], default=None)
    p.add_argument("--model-dir", default=None, help="CosyVoice3 model directory")
    p.add_argument("--voices-dir", default=None, help="reference <voice>.wav + <voice>.txt")
    p.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="espeak 8101, cosyvoice3 8102")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--max-input-chars", type=int, default=None)
    p.add_argument("--log-level", default=None)
    return p


def build_engine(settings: WorkerSettings) -> Engine:
    """Import only the chosen engine, so `ttsgw worker espeak` never imports torch."""
    name = settings.engine_name
    if name == "espeak":
        from .engines.espeak import EspeakEngine

        return EspeakEngine()
    if name == "synthetic":
        from .engines.synthetic import SyntheticEngine

        return SyntheticEngine(
            device=settings.device, seed=settings.seed, size=settings.synthetic_size
        )
    from .engines.cosyvoice3 import CosyVoice3Engine

    if settings.model_dir is None:
        raise StartupError("the cosyvoice3 engine needs --model-dir (or TTSGW_WORKER_MODEL_DIR)")
    return CosyVoice3Engine(model_dir=settings.model_dir, voices_dir=settings.voices_dir)


def parse_settings(argv: list[str] | None = None) -> WorkerSettings:
    """Flags over TTSGW_WORKER_* env over defaults; raises pydantic's ValidationError."""
    args = build_parser().parse_args(argv)
    return WorkerSettings(**{k: v for k, v in vars(args).items() if v is not None})


def run(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        print(f"ttsgw worker: invalid setting {field}: {err['msg']}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    install_log_ids()
    telemetry = setup_worker_tracing(f"ttsgw-worker-{settings.kind}", settings.zipkin_url)
    try:
        from .server import create_server

        engine = build_engine(settings)
        server, _ = create_server(engine, settings)
    except StartupError as exc:
        print(f"ttsgw worker: {exc.message}", file=sys.stderr)
        return 2
    server.app.add_middleware(TracingMiddleware, telemetry=telemetry)
    if telemetry is not None:
        server.app.state.metrics.registry.register(telemetry.counts)
    where = f"{settings.kind} ({engine.name}) on {server.url}"
    print(f"ttsgw worker: serving {where}", file=sys.stderr)
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        return 130
    finally:
        if telemetry is not None:
            telemetry.shutdown()
    if server.load_error is not None:
        err_msg = getattr(server.load_error, "message", None) or repr(server.load_error)
        print(f"ttsgw worker: engine {engine.name} failed to load: {err_msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
