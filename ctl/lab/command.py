"""Running the system tools the lab is built with (``ip``, ``mesh-init``), failures mapped to ``LabError``."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence

import trio

from ctl.errors import CtlError


class LabError(CtlError):
    """The lab could not be built, inspected or torn down; the message says which step and why."""


async def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a short-lived command to completion, capturing its output.

    Error handling: a missing program or (with ``check``) a non-zero exit raises ``LabError`` quoting the
    command and the last line of its stderr.
    """
    try:
        done = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)
    except FileNotFoundError:
        raise LabError(f"cannot run `{shlex.join(argv)}`: {argv[0]} not found") from None
    if check and done.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed (exit {done.returncode}): {last_line(done.stderr)}")
    return done


def last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"
