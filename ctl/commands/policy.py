"""``meshctl policy validate FILE`` and ``meshctl policy schema``: offline checks of a policy bundle."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ctl.commands import Subparsers
from ctl.errors import CtlError


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
    schema = actions.add_parser(
        "schema", help="print the bundle's JSON Schema", description="Print the JSON Schema."
    )
    schema.set_defaults(run=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    from policy.load import PolicyError, load_policy_file

    path = Path(args.file)
    if not path.is_file():
        raise CtlError(f"cannot read policy file {path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        policy = load_policy_file(path)
    except PolicyError as exc:
        problems = exc.problems
        print(f"{path}: invalid policy, {len(problems)} problem(s):")
        for problem in problems:
            print(f"  {problem.path or '(document)'}: {problem.message}")
        return 1
    except OSError as exc:
        raise CtlError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    print(f"{path}: valid (name {policy.name or '(unnamed)'!r}, version {policy.version})")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    import msgspec
    from policy.schema import json_schema

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2).decode() + "\n")
    return 0
