"""`ttsgw priority-classes`: API-key classes and their levels; add a key (shown only once)."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.arguments import Actions
from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, execute
from ttsgw.ops.views import config

PROG = "ttsgw priority-classes"
DESCRIPTION = "List priority classes, or add an API key to one (the key is printed once)."


def list_classes(client: AdminClient, _: argparse.Namespace) -> Output:
    data = client.list_priority_classes()
    return Output(data, config.priority_classes_view(data))


def add_key(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.add_key(args.name)
    return Output(data, config.new_key_view(args.name, data))


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    actions.add("list", list_classes, "list priority classes with their key fingerprints")
    actions.add(
        "add-key", add_key, "make a new API key for class NAME; it is printed only this once"
    ).add_argument("name", metavar="NAME")


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
