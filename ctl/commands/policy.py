"""``meshctl policy validate FILE`` and ``meshctl policy schema``: offline checks of a policy bundle;
``meshctl policy diff FILE``: what the bundle would change for a running proxy, before it is applied."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ctl.commands import Subparsers
from ctl.commands.target import add_target_options, target_client

if TYPE_CHECKING:
    from ctl.policy_diff import ConnectionVerdict, PolicyDiff
    from policy.model import Policy

DIFF_DISRUPTS: Final = 3  # exit status when open connections would be affected, so a script can gate a rollout

_DIFF_HELP: Final = """\
Show what applying FILE would change for a running proxy, before it is applied: a verdict for each of its open
connections (inbound: denied, requests limited or unchanged; outbound: rerouted, re-identified or unchanged), and
the bundle's changes to services, routes, meshed destinations, authorization and ports, one line each.

Exit status: 0 when no open connection would be affected, 3 when some would be (denied, requests limited,
rerouted or re-identified), 1 when the proxy cannot be reached or FILE is invalid (every problem listed), 2 for
bad flags."""


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "policy", help="validate a policy bundle or print its JSON Schema", description="Policy bundle tools."
    )
    actions = parser.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="check a bundle offline and list every problem",
        description="Check a policy bundle without a proxy. Exit 0 when valid, 1 with every problem listed.",
    )
    validate.add_argument("file", metavar="FILE", help="the policy bundle (YAML or JSON)")
    validate.set_defaults(run=run_validate)
    diff = actions.add_parser(
        "diff",
        help="show what a bundle would change for a running proxy's connections and routes",
        description=_DIFF_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("file", metavar="FILE", help="the candidate policy bundle (YAML, JSON or TOML)")
    diff.add_argument("--json", action="store_true", help="print the comparison as one JSON document")
    add_target_options(diff, top_level=False)
    diff.set_defaults(run=run_diff)
    schema = actions.add_parser("schema", help="print the bundle's JSON Schema", description="Print the JSON Schema.")
    schema.set_defaults(run=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    from policy.load import policy_version

    path = Path(args.file)
    policy = _load(path)
    if policy is None:
        return 1
    # The version is the content hash the proxy reports (meshctl status), so the two can be compared.
    name = policy.name or "(unnamed)"
    print(f"{path}: valid (name {name!r}, version {policy_version(policy)})")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    import msgspec

    from policy.schema import json_schema

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n")
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from ctl.policy_diff import diff_policies
    from ctl.render import to_json

    path = Path(args.file)
    candidate = _load(path)
    if candidate is None:
        return 1
    client = target_client(args)
    config = client.config()
    live = _live_policy(client.describe(), bytes(config.policy))
    connections = client.connections().open
    try:
        result = diff_policies(live, candidate, connections)
    except ValueError as exc:
        from ctl.client import AdminAnswerError

        where = client.describe()
        raise AdminAnswerError(f"{where} answered GET /connections with a row meshctl cannot read: {exc}") from None
    if args.json:
        sys.stdout.write(to_json(result) + "\n")
    else:
        where = f"{client.describe()}, generation {config.policy_generation}"
        sys.stdout.write(render_diff(result, live_from=where, candidate_from=str(path)))
    return DIFF_DISRUPTS if result.disrupts else 0


def _load(path: Path) -> Policy | None:
    """The bundle at ``path``, or None after printing every problem (as ``policy validate`` does)."""
    from policy.load import PolicyError, load_policy_file

    try:
        return load_policy_file(path)
    except PolicyError as exc:
        # A missing or unreadable file is a PolicyError too: one problem for the whole document.
        print(f"{path}: invalid policy, {len(exc.problems)} problem(s):")
        for problem in exc.problems:
            print(f"  {problem.path}: {problem.message}" if problem.path else f"  {problem.message}")
        return None


def _live_policy(where: str, document: bytes) -> Policy:
    from ctl.client import AdminAnswerError
    from policy.load import PolicyError, decode_policy

    try:
        return decode_policy(document, "json", source=f"{where} /config")
    except PolicyError as exc:
        first = exc.problems[0]
        raise AdminAnswerError(
            f"{where} answered GET /config with a policy this meshctl cannot read ({len(exc.problems)} problem(s),"
            f" first: {first.path or 'document'}: {first.message}); is meshctl older than the proxy?"
        ) from None


def render_diff(result: PolicyDiff, *, live_from: str, candidate_from: str) -> str:
    """Both policies, a verdict per open connection (with notes), then the bundle's changes."""
    from ctl.policy_diff import VERDICTS
    from ctl.render import CONNECTION_COLUMNS
    from ctl.table import Column, render_table

    def named(name: str) -> str:
        return repr(name) if name else "(unnamed)"

    lines = [
        f"live:      {named(result.live.name)} version {result.live.version} ({live_from})",
        f"candidate: {named(result.candidate.name)} version {result.candidate.version} ({candidate_from})",
        "",
        "open connections: " + ", ".join(f"{result.counts.of(verdict)} {verdict}" for verdict in VERDICTS),
    ]
    if result.connections:
        # The first five columns as `meshctl conns` shows them, then the verdict.
        columns = (*CONNECTION_COLUMNS[:5], Column("VERDICT"), Column("REASON"))
        lines += ["", *render_table(columns, [_verdict_row(found) for found in result.connections])]
        notes = [f"  {found.connection.id}: {note}" for found in result.connections for note in found.notes]
        if notes:
            lines += [
                "",
                "notes (timeouts, protocol and exclusion are what new connections to the same destination get):",
                *notes,
            ]
    lines += ["", f"policy changes: {len(result.changes) or 'none'}"]
    lines += [f"  {change.subject}: {change.change}" for change in result.changes]
    return "\n".join(lines) + "\n"


def _verdict_row(found: ConnectionVerdict) -> list[str]:
    conn = found.connection
    return [
        str(conn.id),
        conn.direction,
        conn.client,
        conn.original_dst,
        conn.upstream or "-",
        found.verdict,
        found.reason,
    ]
