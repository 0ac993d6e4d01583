"""`ttsgw revisions`: the history of the desired state; show, diff and restore revisions."""

from __future__ import annotations

import argparse

import httpx

from ttsgw.ops.arguments import Actions, add_wait_options, revision_number, wait_seconds
from ttsgw.ops.client import AdminClient
from ttsgw.ops.runner import Output, convergence_problem, envoys_after_wait, execute
from ttsgw.ops.views import config, revisions

PROG = "ttsgw revisions"
DESCRIPTION = "List, show, diff and restore revisions of the desired state."


def list_revisions(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.list_revisions(limit=args.limit, before=args.before)
    return Output(data, revisions.revisions_table(data))


def show_revision(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.get_revision(args.number)
    return Output(data, revisions.revision_detail(data))


def diff_revision(client: AdminClient, args: argparse.Namespace) -> Output:
    data = client.diff_revision(args.number, against=args.against)
    return Output(data, revisions.revision_diff(data))


def restore_revision(client: AdminClient, args: argparse.Namespace) -> Output:
    wait_s = wait_seconds(args)
    result = client.restore_revision(args.number, wait_s=wait_s)
    what = f"restore revision {args.number}"
    return Output(
        result,
        config.write_result(result, what, envoys_after_wait(client, wait_s)),
        convergence_problem(result, wait_s),
    )


def configure(parser: argparse.ArgumentParser) -> None:
    actions = Actions(parser)
    lister = actions.add("list", list_revisions, "list revisions, newest first")
    lister.add_argument("--limit", type=int, default=20, help="how many (1..1000, default 20)")
    lister.add_argument(
        "--before", type=revision_number, metavar="N", help="only revisions older than N"
    )
    actions.add("show", show_revision, "show one revision and its state").add_argument(
        "number", metavar="N", type=revision_number
    )
    differ = actions.add("diff", diff_revision, "what revision N changed")
    differ.add_argument("number", metavar="N", type=revision_number)
    differ.add_argument(
        "--against",
        metavar="M",
        type=revision_number,
        help="compare with revision M instead of N-1",
    )
    restorer = actions.add(
        "restore", restore_revision, "make revision N's state the head again (as a new revision)"
    )
    restorer.add_argument("number", metavar="N", type=revision_number)
    add_wait_options(restorer)


def run(argv: list[str], *, transport: httpx.BaseTransport | None = None) -> int:
    return execute(PROG, DESCRIPTION, configure, argv, transport=transport)
