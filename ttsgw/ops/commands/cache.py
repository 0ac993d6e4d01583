"""`ttsgw cache`: the gateway's response cache, its hit ratios per model, and purging it."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.arguments import Actions
from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views import live

PROG = "ttsgw cache"
DESCRIPTION = "Show the response cache's stats per model, or purge cached answers."


def cache_stats(client: AdminClient, _: argparse.Namespace) -> Output:
    data = client.cache_stats()
    return Output(data, live.cache_stats_view(data))


def cache_purge(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.cache_purge(model=args.model)
    return Output(data, live.cache_purge_view(data))


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    actions.add("stats", cache_stats, "hits, misses, bypasses and hit ratio per model")
    actions.add("purge", cache_purge, "delete cached answers (stats are kept)").add_argument(
        "--model", metavar="M", help="only this model's answers (default: all)"
    )


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
