"""Start a marked lab-style process and wait, without sleeping, until it has reached its own code.

Its stdout "log" is a FIFO the test reads: the first line ("up") proves exec is done (so its environment
holds the marker) and any signal set-up before the print is in place.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from ctl.lab.processes import marker, spawn_detached


async def spawn_ready(directory: Path, prefix: str, pod: str, *, enter: Sequence[str] = (), setup: str = "") -> int:
    """Runs ``python -c "<setup>; print('up'); sleep 60"`` after the ``enter`` argv; waits for "up"."""
    fifo = directory / f"{pod}-{len(os.listdir(directory))}.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    script = f"import signal, time; {setup or 'pass'}; print('up', flush=True); time.sleep(60)"
    try:
        pid = spawn_detached([*enter, sys.executable, "-c", script], log=fifo, mark=marker(prefix, pod, "test"))
        received = b""
        with trio.fail_after(10):
            while b"\n" not in received:
                await trio.lowlevel.wait_readable(reader)
                received += os.read(reader, 16)
        assert received == b"up\n", received
        return pid
    finally:
        os.close(reader)
