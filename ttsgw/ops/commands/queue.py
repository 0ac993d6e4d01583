"""`ttsgw queue`: how busy each model is, from the worker queues the control plane polls."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views.queue import queue_view

PROG = "ttsgw queue"
DESCRIPTION = (
    "Show each model's worker queues: depth, fill and estimated wait per priority level, "
    "requests in flight, the drain rate, a busy hint, and any unreachable worker."
)


def show_queue(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.queue_status(model=args.model)
    return Output(data, queue_view(data))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="M", help="only this model (default: all)")
    parser.set_defaults(handler=show_queue)


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
