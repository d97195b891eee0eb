"""Long-running lab processes (proxies, demo apps): started detached, marked, found again, stopped.

Each process gets ``TRIOMESH_LAB=<prefix>/<pod>/<role>`` in its environment. That marker, not the state
file, is how ``lab down`` finds a lab's processes after a crash, even one whose namespace was deleted by hand
(the namespace then lives on only through its processes, invisible to ``ip netns``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import trio

MARKER_ENV: Final = "TRIOMESH_LAB"
_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Children this process started, so their exit is reaped (a reaped child stops showing up as a zombie).
_CHILDREN: Final[dict[int, subprocess.Popen[bytes]]] = {}


def marker(prefix: str, pod: str, role: str) -> str:
    return f"{prefix}/{pod}/{role}"


def spawn_detached(argv: Sequence[str], *, log: Path, mark: str) -> int:
    """Start ``argv`` in its own session (so the terminal's Ctrl-C does not reach it) and return its pid.

    Resource handling: stdout and stderr go to ``log`` (truncated); the process outlives this one.
    """
    env = {
        "PATH": os.environ.get("PATH", _PATH),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        MARKER_ENV: mark,
    }
    with log.open("wb") as out:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd="/",
            env=env,
        )
    _CHILDREN[child.pid] = child
    return child.pid


def is_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state letter follows the command name, which is in parentheses and may itself contain ")".
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def marked_processes(prefix: str) -> dict[int, str]:
    """pid -> marker for every live process carrying this lab's marker."""
    wanted = f"{MARKER_ENV}={prefix}/".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        for item in environ.split(b"\0"):
            if item.startswith(wanted):
                found[int(entry.name)] = item.split(b"=", 1)[1].decode(errors="replace")
                break
    return found


async def stop(pids: Sequence[int], *, grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever still runs after ``grace`` seconds; returns the pids that were alive."""
    alive = [pid for pid in pids if is_alive(pid)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        remaining = [pid for pid in alive if is_alive(pid)]
        if not remaining:
            break
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with trio.move_on_after(wait):
            async with trio.open_nursery() as nursery:
                for pid in remaining:
                    nursery.start_soon(wait_exit, pid)
    for pid in alive:
        is_alive(pid)  # reaps the ones that are our children
    return alive


async def wait_exit(pid: int) -> None:
    """Returns once ``pid`` has exited: a pidfd turns readable then, for any process, child or not."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else f"(empty log {path})"
