"""`ttsgw backends`: list and show the backends models split traffic over."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.arguments import Actions
from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views import config

PROG = "ttsgw backends"
DESCRIPTION = "List and show backends: endpoints, health checks, circuit breakers."


def list_backends(client: AdminClient, _: argparse.Namespace) -> Output:
    data = client.list_backends()
    return Output(data, config.backends_table(data))


def show_backend(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.get_backend(args.name)
    return Output(data, config.backend_detail(data))


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    actions.add("list", list_backends, "list backends")
    actions.add("show", show_backend, "show one backend").add_argument("name", metavar="NAME")


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
