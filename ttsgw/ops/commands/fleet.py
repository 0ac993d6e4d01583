"""`ttsgw fleet`: every connected Envoy, the config versions it ACKed, and its last NACK."""

from __future__ import annotations

import argparse
import time

import httpx

from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views import live

PROG = "ttsgw fleet"
DESCRIPTION = (
    "Show each connected Envoy: version, connected since, the config version it ACKed per "
    "type ('behind' when it is not the head yet), and its last NACK."
)


def show_fleet(client: AdminClient, _: argparse.Namespace) -> Output:
    data = client.fleet()
    return Output(data, live.fleet_view(data, now=time.time()))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=show_fleet)


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
