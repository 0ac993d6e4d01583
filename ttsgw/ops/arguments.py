"""Argument parsing for the ops commands: the global options, actions, and `BACKEND=WEIGHT` splits.

Parse errors raise `UsageError` (exit 2) instead of argparse's own exit, so the runner
reports them like every other error.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from ttsgw.ops.errors import UsageError


class OpsArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage(), self.prog)


@dataclass(frozen=True)
class GlobalOptions:
    admin_url: str | None
    token: str | None
    state_dir: str | None
    json: bool
    author: str | None


def add_global_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option given before the action must survive the action's own parser,
    # whose defaults would otherwise overwrite it.
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--admin-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="admin API base URL (env TTSGW_ADMIN_URL; default http://127.0.0.1:9000)",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="admin token (env TTSGW_ADMIN_TOKEN; else read from STATE_DIR/admin-token)",
    )
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the stack's state dir, for its admin-token (env TTSGW_STATE_DIR; default .ttsgw)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON instead of tables",
    )
    group.add_argument(
        "--author",
        default=argparse.SUPPRESS,
        help="who makes this change, recorded on the revision (sent as X-Author)",
    )


def global_options(args: argparse.Namespace) -> GlobalOptions:
    return GlobalOptions(
        admin_url=getattr(args, "admin_url", None),
        token=getattr(args, "token", None),
        state_dir=getattr(args, "state_dir", None),
        json=bool(getattr(args, "json", False)),
        author=getattr(args, "author", None),
    )


def build_parser(prog: str, description: str) -> OpsArgumentParser:
    parser = OpsArgumentParser(prog=prog, description=description)
    add_global_options(parser)
    return parser


class Actions:
    """The verbs of one command (`list`, `show`, ...); each leaf gets the global options too."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(
            dest="action", required=True, parser_class=OpsArgumentParser
        )

    def add(self, name: str, handler: Callable[..., Any], help_: str) -> argparse.ArgumentParser:
        parser = self._sub.add_parser(name, help=help_, description=help_)
        add_global_options(parser)
        parser.set_defaults(handler=handler)
        # Named by its choices, so "required: {list,show}" says what to type.
        self._sub.metavar = "{" + ",".join(self._sub.choices) + "}"
        return parser


def add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="return only once every connected Envoy ACKed"
    )
    parser.add_argument(
        "--timeout",
        type=_wait_timeout,
        default=30.0,
        metavar="SECONDS",
        help="how long --wait waits (0 < s <= 300, default 30)",
    )


def wait_seconds(args: argparse.Namespace) -> float | None:
    return float(args.timeout) if args.wait else None


def split(text: str) -> dict[str, Any]:
    """`espeak=90` -> {"backend": "espeak", "weight": 90}; the API checks the rest."""
    backend, sep, weight = text.partition("=")
    if not sep or not backend or not weight:
        raise argparse.ArgumentTypeError(f"expected BACKEND=WEIGHT, got {text!r}")
    try:
        return {"backend": backend, "weight": int(weight)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"the weight in {text!r} must be a whole number") from None


def revision_number(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"a revision is a number from 1 up, got {text!r}")
    return number


def _wait_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 300, got {text!r}")
    return value
