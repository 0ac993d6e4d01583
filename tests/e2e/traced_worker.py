"""A worker with tracing wired the way tts_backends/main.py will wire it (see docs/tracing.md).

Test-local until the worker's entry point calls ``setup_worker_tracing`` itself:
``python -m tests.e2e.traced_worker cosyvoice3 --port N --engine synthetic`` with
``TTSGW_WORKER_ZIPKIN_URL`` set.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from tts_backends.main import build_engine, parse_settings
from tts_backends.server import create_server
from tts_backends.tracing import (
    LOG_FORMAT,
    TracingMiddleware,
    install_log_ids,
    setup_worker_tracing,
)


def main(argv: list[str]) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    install_log_ids()
    telemetry = setup_worker_tracing(f"ttsgw-worker-{settings.kind}", settings.zipkin_url)
    server, _ = create_server(build_engine(settings), settings)
    server.app.add_middleware(TracingMiddleware, telemetry=telemetry)
    try:
        asyncio.run(server.serve())
    finally:
        if telemetry is not None:
            telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
