"""The errors meshctl expects: each becomes one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

from typing import ClassVar


class CtlError(Exception):
    """A runtime failure the operator can act on (proxy unreachable, namespace missing, bad answer)."""

    exit_status: ClassVar[int] = 1


class UsageError(CtlError):
    """A bad flag or argument value found after argparse accepted the command line."""

    exit_status: ClassVar[int] = 2
