"""The worker's HTTP app: one OpenAI-compatible contract for every engine; never imports torch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ttsgw_common.telemetry import log_context
from ttsgw_contract.headers import ENGINE_HEADER
from ttsgw_contract.speech import ERROR_CODES as SPEECH_ERROR_CODES

from .engines.base import Engine
from .errors import OverloadedError, WorkerError
from .lifecycle import EngineLifecycle
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import WorkerMetrics
from .scheduler import Scheduler
from .schemas import SpeechRequest, VoicePublic, VoicesResponse
from .settings import WorkerSettings
from .speech import SpeechService
from .voice_registry import VoiceRegistry
from .voice_routes import voice_router

log = logging.getLogger(__name__)

SPEECH_PATH = "/v1/audio/speech"
_OUTCOMES = {200: "ok", 400: "bad_request", 413: "too_large", 429: "shed", 503: "not_ready"}


def error_response(
    status: int, message: str, type_: str, param: str | None, code: str | None
) -> JSONResponse:
    """The one place an error becomes OpenAI's wire shape."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    # request_id and trace_id, when known: one id finds the access log, logs and trace.
    body["error"].update(log_context.ids())
    return JSONResponse(body, status_code=status)


def worker_error_response(exc: WorkerError) -> JSONResponse:
    response = error_response(exc.status, exc.message, exc.type, exc.param, exc.code)
    if isinstance(exc, OverloadedError):
        response.headers["retry-after"] = str(exc.retry_after_s)
    return response


class EngineHeaderMiddleware:
    """Stamps `x-tts-engine` on every response, errors and 404s included."""

    def __init__(self, app: ASGIApp, engine_name: str) -> None:
        self.app = app
        self.header = (ENGINE_HEADER.encode(), engine_name.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


def _validation_param(errors: list[dict[str, Any]]) -> tuple[str | None, str]:
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return None, f"Request body is not valid JSON: {first.get('msg')}"
    param = ".".join(loc) or None
    prefix = f"{param}: " if param else ""
    return param, f"{prefix}{first.get('msg', 'invalid value')}"


def create_app(
    engine: Engine,
    settings: WorkerSettings,
    *,
    on_load_failure: Callable[[Exception], None] | None = None,
    voice_registry: VoiceRegistry | None = None,
) -> FastAPI:
    """Build the worker app around `engine`; the engine loads in the background at startup."""
    metrics = WorkerMetrics(engine.name)
    lifecycle = EngineLifecycle(engine, warmup=settings.warmup, on_failure=on_load_failure)
    scheduler = Scheduler(engine, settings.scheduler_policy(engine), metrics)
    # Engines on CUDA report their memory; the gauge stays absent on CPU.
    gpu_memory = getattr(engine, "gpu_memory", None)
    if callable(gpu_memory) and getattr(engine, "on_gpu", False):
        metrics.track_gpu_memory(gpu_memory)
    service = SpeechService(engine, settings, scheduler, lifecycle, metrics, voice_registry)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(lifecycle.start())
        try:
            async with scheduler.running_loop():
                yield
        finally:
            if voice_registry is not None:
                await voice_registry.aclose()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # FastAPI traces on its own once a tracer provider exists; TracingMiddleware already
    # makes the one server span per request, so FastAPI's duplicates are turned off.
    app = FastAPI(
        title=f"ttsgw worker ({engine.name})",
        lifespan=lifespan,
        telemetry={"tracing": False, "operation_spans": False, "logs": False, "metrics": False},
    )
    app.state.engine = engine
    app.state.lifecycle = lifecycle
    app.state.metrics = metrics
    app.state.scheduler = scheduler
    app.add_middleware(EngineHeaderMiddleware, engine_name=engine.name)
    app.include_router(voice_router(voice_registry))

    def record(status: int) -> None:
        metrics.observe_request(_OUTCOMES.get(status, "error"))

    @app.exception_handler(WorkerError)
    async def on_worker_error(request: Request, exc: WorkerError) -> JSONResponse:
        if request.url.path == SPEECH_PATH:
            record(exc.status)
            # One line per failed request; the log filter adds request_id and trace_id.
            log.info("speech %d %s: %s", exc.status, exc.code, exc.message)
        return worker_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        param, message = _validation_param(errors)
        if request.url.path == SPEECH_PATH:
            record(400)
        # The speech contract's own checks (unencodable or blank text) name their code.
        kind = errors[0].get("type") if errors else None
        code = kind if kind in SPEECH_ERROR_CODES else "invalid_value"
        return error_response(400, message, "invalid_request_error", param, code)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(exc.status_code, str(exc.detail), type_, None, None)

    @app.post(SPEECH_PATH)
    async def speech(body: SpeechRequest, request: Request) -> Response:
        return await service.respond(body, request)

    @app.get("/v1/queue")
    async def queue() -> dict[str, Any]:
        """How busy this worker is: depth and estimated wait per level, in-flight, batch."""
        return scheduler.status()

    @app.get("/v1/audio/voices")
    async def voices() -> VoicesResponse:
        listed = [VoicePublic(id=v.id, name=v.name, language=v.language) for v in engine.voices()]
        return VoicesResponse(
            voices=listed,
            openai_aliases=engine.openai_aliases(),
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if lifecycle.ready:
            return JSONResponse({"status": "ready", "engine": engine.name})
        status = "failed" if lifecycle.error else "loading"
        body = {"status": status, "engine": engine.name, "error": lifecycle.error}
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app
