"""meshctl: the operator CLI for triomesh proxies (``meshctl --help``).

Argument parsing and error reporting only; each subcommand lives in ``ctl.commands``. Expected failures
print one line on stderr and exit 1 (2 for bad arguments, as argparse does); only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ctl import ca
from ctl.commands import conns, lab, policy, status
from ctl.commands.target import add_target_options
from ctl.errors import CtlError

PROG = "meshctl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect triomesh proxies (conns, status), check policy bundles, run a namespace lab.",
    )
    add_target_options(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (conns, status, policy, lab, ca):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CtlError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`meshctl conns | head`): not an error; keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
