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
    client = target_client(args)
    report = client.status()
    if args.json:
        sys.stdout.write(to_json(report) + "\n")
        return 0
    # /status says only whether; /ready says why not ("not ready: <why>").
    because = "" if report.ready else client.ready()[1]
    sys.stdout.write(render_status(report, now=time.time(), not_ready_because=because))
    return 0
