from __future__ import annotations

import secrets
import signal
from pathlib import Path

import trio

from ctl.lab.processes import is_alive, log_tail, marked_processes, marker, spawn_detached, stop
from tests.ctl.ready_process import spawn_ready


def _prefix() -> str:
    return f"tmct{secrets.token_hex(3)}"


async def test_spawned_process_is_marked_found_and_stopped(tmp_path: Path) -> None:
    prefix = _prefix()
    log = tmp_path / "sleep.log"
    pid = spawn_detached(["sleep", "60"], log=log, mark=marker(prefix, "a", "app"))
    try:
        assert is_alive(pid)
        assert marked_processes(prefix) == {pid: f"{prefix}/a/app"}
        assert marked_processes(_prefix()) == {}
        with trio.fail_after(10):
            assert await stop([pid]) == [pid]
        assert not is_alive(pid)
        assert marked_processes(prefix) == {}
    finally:
        await stop([pid], grace=0)


async def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    ignore_term = f"signal.signal({signal.SIGTERM.value}, signal.SIG_IGN)"
    pid = await spawn_ready(tmp_path, _prefix(), "a", setup=ignore_term)
    try:
        with trio.fail_after(10):
            assert await stop([pid], grace=0.2) == [pid]
        assert not is_alive(pid)
    finally:
        await stop([pid], grace=0)


async def test_stopping_nothing_or_gone_pids_is_fine() -> None:
    assert await stop([]) == []
    assert await stop([2**22 + 3]) == []


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {n}\n" for n in range(20)))
    assert log_tail(log, 2) == "  | line 18\n  | line 19"
    assert log_tail(tmp_path / "missing.log") == f"(no log at {tmp_path / 'missing.log'})"
