"""``meshctl policy validate FILE`` and ``meshctl policy schema``: offline checks of a policy bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctl.commands import Subparsers


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
    schema = actions.add_parser("schema", help="print the bundle's JSON Schema", description="Print the JSON Schema.")
    schema.set_defaults(run=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    from policy.load import PolicyError, load_policy_file, policy_version

    path = Path(args.file)
    try:
        policy = load_policy_file(path)
    except PolicyError as exc:
        # A missing or unreadable file is a PolicyError too: one problem for the whole document.
        print(f"{path}: invalid policy, {len(exc.problems)} problem(s):")
        for problem in exc.problems:
            print(f"  {problem.path}: {problem.message}" if problem.path else f"  {problem.message}")
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
