"""`ttsgw span-relay`: serve the tail-sampling span relay until stopped; `run(argv)` is testable."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from pydantic import ValidationError

from ttsgw_common.telemetry.errors import StartupError
from ttsgw_common.telemetry.relay_server import create_server
from ttsgw_common.telemetry.settings import TracingSettings


def parse_settings(argv: list[str] | None) -> TracingSettings:
    p = argparse.ArgumentParser(
        prog="ttsgw span-relay",
        description="Zipkin v2 relay that keeps errors, slow requests and a ratio of the rest.",
    )
    p.add_argument("--host", dest="relay_host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", dest="relay_port", type=int, help="listen port (default 9412)")
    p.add_argument(
        "--zipkin-url", help="where kept traces go, e.g. http://zipkin:9411/api/v2/spans"
    )
    p.add_argument("--sample-ratio", type=float, help="share of ordinary traces kept (0.1)")
    p.add_argument("--slow-threshold-ms", type=float, help="slower requests are always kept")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    return TracingSettings(**args)


def run(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = parse_settings(argv)
        server, port = create_server(settings)
    except ValidationError as exc:
        print(f"ttsgw span-relay: invalid setting: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"ttsgw span-relay: {exc}", file=sys.stderr)
        return 2
    print(
        f"ttsgw span-relay: on {settings.relay_host}:{port}, ratio {settings.sample_ratio:g}, "
        f"slow > {settings.slow_threshold_ms:g} ms, "
        f"forwarding to {settings.zipkin_url or 'nowhere'}",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
