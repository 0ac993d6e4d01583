"""Runs one ops command: parse, resolve settings, call the API, print; every error to one line.

This is the one place errors meet the terminal: a usage error exits 2, anything the API
or the network says exits 1, and no traceback ever reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ttsgw.ops.arguments import build_parser, global_options
from ttsgw.ops.client import AdminClient
from ttsgw.ops.errors import ApiError, OpsError, UsageError
from ttsgw.ops.settings import Credentials, OpsSettings, resolve_credentials, token_help


@dataclass(frozen=True)
class Output:
    """What a command produced: the API's JSON, its human rendering, and maybe a problem."""

    data: Any
    text: str
    # Said on stderr after the output, with exit 1: the request worked but the goal did not
    # (a waited write that did not converge).
    problem: str | None = None


Handler = Callable[[AdminClient, argparse.Namespace], Output]
Configure = Callable[[argparse.ArgumentParser], None]


def execute(
    prog: str,
    description: str,
    configure: Configure,
    argv: list[str],
    *,
    transport: httpx.BaseTransport | None = None,
) -> int:
    parser = build_parser(prog, description)
    configure(parser)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"{exc.usage}{exc.prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0

    options = global_options(args)
    overrides: dict[str, Any] = {"admin_url": options.admin_url, "state_dir": options.state_dir}
    settings = OpsSettings(**{k: v for k, v in overrides.items() if v is not None})
    credentials = resolve_credentials(settings, options.token)
    handler: Handler = args.handler
    try:
        with AdminClient(
            settings.admin_url,
            token=credentials.token,
            author=options.author,
            transport=transport,
        ) as client:
            output = handler(client, args)
    except OpsError as exc:
        print(f"ttsgw: {describe(exc, settings, credentials)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ttsgw: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a CLI bug still gets one line, never a traceback
        print(f"ttsgw: unexpected error in the CLI: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    _emit(json.dumps(output.data, indent=2) if options.json else output.text)
    if output.problem:
        print(f"ttsgw: {output.problem}", file=sys.stderr)
        return 1
    return 0


def convergence_problem(result: dict[str, Any], wait_s: float | None) -> str | None:
    """For a waited write: scripts that asked to wait must hear that the fleet lagged."""
    if wait_s is None or result.get("acked") is not False:
        return None
    return (
        f"revision {result['revision']} is stored and being pushed, but not every Envoy "
        f"ACKed it within {wait_s:g}s; see `ttsgw fleet`"
    )


def envoys_after_wait(client: AdminClient, wait_s: float | None) -> int | None:
    """How many Envoys a waited write waited for; None when it did not wait."""
    if wait_s is None:
        return None
    try:
        return len(client.fleet().get("nodes") or [])
    except OpsError:
        return None  # the write itself succeeded; only the wording gets vaguer


def describe(exc: OpsError, settings: OpsSettings, credentials: Credentials) -> str:
    if isinstance(exc, ApiError):
        if exc.status == 401:
            if credentials.token is None:
                return f"401 unauthorized: no admin token was found; {token_help(settings)}"
            return (
                f"401 unauthorized: the control plane refused the admin token from "
                f"{credentials.source}; {token_help(settings)}"
            )
        return f"{exc.status} {exc.code}: {exc.message}"
    return exc.message


def _emit(text: str) -> None:
    if not text:
        return
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `ttsgw revisions list | head`: the reader left; that is not an error. Point stdout
        # at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
