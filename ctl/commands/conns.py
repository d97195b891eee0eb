"""``meshctl conns``: one proxy's connection table, once or refreshed with ``--watch``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Final

from ctl.client import AdminClient
from ctl.commands import Subparsers
from ctl.commands.argtypes import number_in
from ctl.commands.target import add_target_options, target_client
from ctl.commands.watch import watch
from ctl.render import render_connections, select_connections, to_json

DEFAULT_WATCH: Final = 2.0  # seconds between refreshes when --watch has no value
MAX_WATCH: Final = 3600.0  # a longer interval is a typo (minutes meant as seconds?)


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "conns",
        help="show a proxy's open and recently closed connections",
        description="Show one proxy's connection table: open connections, then recently closed ones.",
    )
    add_target_options(parser, top_level=False)
    parser.add_argument("--json", action="store_true", help="print the ConnectionsReport as JSON")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="only open connections")
    which.add_argument("--closed", action="store_true", help="only recently closed connections")
    parser.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH,
        type=number_in(float, 0.1, MAX_WATCH, what="a number of seconds", unit=" seconds"),
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_WATCH:g}) until Ctrl-C",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    client = target_client(args)
    show = _renderer(client, as_json=bool(args.json), open_=not args.closed, closed=not args.open)
    interval: float | None = args.watch
    if interval is None:
        sys.stdout.write(show())
        return 0
    return watch(show, interval, title=f"meshctl conns: {client.describe()}", clear=not args.json)


def _renderer(client: AdminClient, *, as_json: bool, open_: bool, closed: bool) -> Callable[[], str]:
    def show() -> str:
        report = select_connections(client.connections(), open_=open_, closed=closed)
        return to_json(report) + "\n" if as_json else render_connections(report, now=time.time())

    return show
