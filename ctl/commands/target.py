"""Which proxy a command talks to: ``--admin URL``, plus ``--netns NAME`` or ``--pod NAME`` (a lab pod)."""

from __future__ import annotations

import argparse

from ctl.client import DEFAULT_ADMIN_URL, AdminAddress, AdminClient, parse_admin_url
from ctl.commands.argtypes import checked
from ctl.errors import UsageError
from ctl.lab.topology import DEFAULT_PREFIX, pod_netns


def add_target_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The options go on the top-level parser and again on each subcommand, so both orders work.

    On subcommands the defaults are SUPPRESS, so an option given before the subcommand is not reset.
    """

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("choosing the proxy")
    group.add_argument(
        "--admin",
        type=checked(parse_admin_url),
        default=default(parse_admin_url(DEFAULT_ADMIN_URL)),
        metavar="URL",
        help=f"the proxy's admin endpoint (default {DEFAULT_ADMIN_URL})",
    )
    group.add_argument(
        "--netns",
        default=default(None),
        metavar="NAME",
        help="reach a proxy inside this network namespace (as in `ip netns list`; needs root)",
    )
    group.add_argument(
        "--pod",
        default=default(None),
        metavar="NAME",
        help="a `meshctl lab` pod: short for --netns <lab prefix>-NAME",
    )
    group.add_argument(
        "--lab-prefix",
        default=default(DEFAULT_PREFIX),
        metavar="PREFIX",
        help=f"the lab prefix --pod refers to (default {DEFAULT_PREFIX})",
    )


def target_client(args: argparse.Namespace) -> AdminClient:
    address: AdminAddress = args.admin
    netns: str | None = args.netns
    pod: str | None = args.pod
    if pod is not None:
        if netns is not None:
            raise UsageError("--pod and --netns both name a namespace: give only one")
        try:
            netns = pod_netns(str(args.lab_prefix), pod)
        except ValueError as exc:
            raise UsageError(f"--pod/--lab-prefix: {exc}") from None
    return AdminClient(address, netns=netns)
