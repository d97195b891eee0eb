"""``mesh-init``: installs (or with --cleanup removes) the rules that send a pod's TCP through its proxy.

Exit codes: 0 done (or nothing to do), 1 runtime failure (missing binary or privilege, iptables or netlink
failure; changes are rolled back), 2 bad flag or policy value (nothing was read or changed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from iptables import config as cfg
from iptables.apply import Action, Ipv6Choice, choose_families, execute, make_plan, render_plan
from iptables.backend import BackendChoice, choose_backend
from iptables.config import ConfigError, FirewallConfig, Mode
from iptables.errors import InitError
from iptables.policy_exclusions import read_policy_exclusions
from iptables.privilege import require_net_admin
from iptables.rules import Family

LOG = logging.getLogger("mesh-init")

T = TypeVar("T")


def _flag_type(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """Adapts a config parser to argparse, which then names the flag in the error and exits 2."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse shows it in "invalid <name> value" for non-ArgumentTypeError failures
    return convert


def _number(what: str) -> Callable[[str], int]:
    return _flag_type(lambda text: cfg.parse_int(text, what), "number")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesh-init",
        description="Install the iptables rules (and, for tproxy, the policy routing) that send the "
        "pod's TCP through the triomesh proxy. Idempotent; a changed configuration replaces the old rules. "
        "Exit status: 0 done, 1 runtime failure (rolled back), 2 bad flag or policy value.",
    )
    port = _flag_type(cfg.parse_port, "port")
    ports = _flag_type(cfg.parse_ports, "ports")
    mark = _number("a mark")
    add = p.add_argument
    add(
        "--mode",
        choices=[m.value for m in Mode],
        default="redirect",
        help="inbound capture (default: redirect)",
    )
    add(
        "--proxy-uid",
        type=_number("a UID"),
        default="1337",
        metavar="UID",
        help="the proxy's UID: its traffic is never redirected (default: 1337)",
    )
    add(
        "--proxy-mark",
        type=mark,
        default="0x539",
        metavar="MARK",
        help="SO_MARK on the proxy's sockets: never redirected (default: 0x539)",
    )
    add(
        "--tproxy-mark",
        type=mark,
        default="0x53a",
        metavar="MARK",
        help="tproxy: fwmark routing packets to the proxy; must differ from --proxy-mark (default: 0x53a)",
    )
    add(
        "--tproxy-table",
        type=_number("a table id"),
        default="133",
        metavar="TABLE",
        help="tproxy: routing table for `local default dev lo` (default: 133)",
    )
    add(
        "--outbound-port",
        type=port,
        default="15001",
        metavar="PORT",
        help="where outbound TCP is redirected (default: 15001)",
    )
    add(
        "--inbound-port",
        type=port,
        default="15006",
        metavar="PORT",
        help="where inbound TCP is sent (default: 15006)",
    )
    add(
        "--exclude-inbound-ports",
        type=ports,
        default="15000",
        metavar="PORTS",
        help="comma-separated ports or ranges (8000-8100) never intercepted inbound; replaces the default, "
        "so list 15000 again to keep the admin port direct (default: 15000)",
    )
    add(
        "--exclude-outbound-ports",
        type=ports,
        default="",
        metavar="PORTS",
        help="destination ports or ranges never intercepted outbound (default: none)",
    )
    add(
        "--exclude-outbound-cidrs",
        type=_flag_type(cfg.parse_cidrs, "cidrs"),
        default="",
        metavar="CIDRS",
        help="comma-separated IPv4/IPv6 destination networks never intercepted outbound (default: none)",
    )
    add(
        "--policy",
        type=Path,
        metavar="FILE",
        help="policy bundle whose inbound.exclude_ports, outbound.exclude_ports and outbound.exclude_cidrs "
        "are added to the lists above",
    )
    add(
        "--iptables-backend",
        choices=[c.value for c in BackendChoice],
        default="auto",
        help="auto: the backend already in use (ours first, then most rules; tie: nft) (default: auto)",
    )
    add(
        "--ipv6",
        choices=[c.value for c in Ipv6Choice],
        default="auto",
        help="auto: when the namespace has IPv6 and ip6tables exists (default: auto)",
    )
    add("--dry-run", action="store_true", help="print exactly what would be run; change nothing")
    add("--cleanup", action="store_true", help="remove exactly what triomesh installed, nothing else")
    add("-v", "--verbose", action="store_true", help="debug logs: commands, payloads, tables before and after")
    return p


def config_from_args(args: argparse.Namespace) -> FirewallConfig:
    """Raises ConfigError naming a FirewallConfig field or a policy path."""
    inbound, outbound, cidrs = (
        args.exclude_inbound_ports,
        args.exclude_outbound_ports,
        args.exclude_outbound_cidrs,
    )
    if args.policy is not None:
        extra = read_policy_exclusions(args.policy)
        inbound += extra.inbound_ports
        outbound += extra.outbound_ports
        cidrs += extra.outbound_cidrs
    return FirewallConfig(
        mode=Mode(args.mode),
        proxy_uid=args.proxy_uid,
        proxy_mark=args.proxy_mark,
        tproxy_mark=args.tproxy_mark,
        tproxy_table=args.tproxy_table,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        exclude_inbound_ports=inbound,
        exclude_outbound_ports=outbound,
        exclude_outbound_cidrs=cidrs,
    )


def _flag_for(field: str) -> str:
    if field in FirewallConfig.__struct_fields__:
        return "--" + field.replace("_", "-")
    return f"--policy {field}"


def run(config: FirewallConfig, args: argparse.Namespace) -> str:
    """Does the work; returns a one-line summary. Raises InitError on runtime failures."""
    action = Action.CLEANUP if args.cleanup else Action.APPLY
    require_net_admin()
    backend = choose_backend(BackendChoice(args.iptables_backend), (Family.IPV4, Family.IPV6))
    install, clean = choose_families(action, Ipv6Choice(args.ipv6), backend)
    plan = make_plan(config, action, backend, install, clean)
    families = ", ".join(f.value for f in plan.families)
    if args.dry_run:
        sys.stdout.write(render_plan(plan))
        return f"dry run ({backend.value}; {families}): nothing was changed"
    if plan.empty:
        return f"nothing to change ({backend.value}; {families})"
    execute(plan)
    if action is Action.CLEANUP:
        return f"removed triomesh rules and routes ({backend.value}; {families})"
    return f"installed {config.mode.value}-mode rules ({backend.value}; {', '.join(f.value for f in install)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Only our own loggers go to debug: pyroute2 logs every netlink message at that level.
    logging.basicConfig(level=logging.WARNING, format="mesh-init: %(message)s", stream=sys.stderr)
    for name in (LOG.name, "iptables"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(f"{_flag_for(exc.field)}: {exc.message}")
    try:
        LOG.info("%s", run(config, args))
    except InitError as exc:
        LOG.error("%s", exc)  # an expected failure: no traceback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
