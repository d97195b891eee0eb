"""``meshctl status``: one proxy's readiness, policy, reload health, listeners and load."""

from __future__ import annotations

import argparse
import sys
import time

from ctl.commands import Subparsers
from ctl.commands.target import add_target_options, target_client
from ctl.render import render_status, to_json


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a proxy's readiness, policy and listeners",
        description="Show one proxy's readiness, active policy, last reload error, uptime and listeners.",
    )
    add_target_options(parser, top_level=False)
    parser.add_argument("--json", action="store_true", help="print the StatusReport as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = target_client(args).status()
    sys.stdout.write(to_json(report) + "\n" if args.json else render_status(report, now=time.time()))
    return 0
