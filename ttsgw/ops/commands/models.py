"""`ttsgw models`: list and show public models, and change their weights."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.arguments import Actions, add_wait_options, split, wait_seconds
from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, convergence_problem, envoys_after_wait, execute
from ttsgw.ops.views import config

PROG = "ttsgw models"
DESCRIPTION = "List and show public models, and change their weights."


def list_models(client: AdminClient, _: argparse.Namespace) -> Output:
    data = client.list_models()
    return Output(data, config.models_table(data))


def show_model(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.get_model(args.name)
    return Output(data, config.model_detail(data))


def set_split(client: AdminClient, args: argparse.Namespace) -> Output:
    wait_s = wait_seconds(args)
    result = client.set_splits(args.name, args.splits, wait_s=wait_s)
    what = f"set splits of {args.name} ({config.splits_inline(args.splits)})"
    return Output(
        result,
        config.write_result(result, what, envoys_after_wait(client, wait_s)),
        convergence_problem(result, wait_s),
    )


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    actions.add("list", list_models, "list public models and their splits")
    actions.add("show", show_model, "show one model").add_argument("name", metavar="NAME")
    setter = actions.add(
        "set-split",
        set_split,
        "set a model's weights, e.g. `espeak=90 espeak-v2=10` (a route-only push)",
    )
    setter.add_argument("name", metavar="NAME")
    setter.add_argument(
        "splits",
        metavar="BACKEND=WEIGHT",
        nargs="+",
        type=split,
        help="relative weights (0..10000); backends left out get no traffic",
    )
    add_wait_options(setter)


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
