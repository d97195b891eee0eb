"""``lab down`` without ``lab up``: leftovers of a crashed lab are found by prefix and marker and removed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from ctl.__main__ import main
from ctl.lab.network import list_netns
from ctl.lab.processes import is_alive, marked_processes, marker, spawn_detached
from ctl.lab.state import lab_dir
from ctl.lab.teardown import teardown
from tests.ctl.ready_process import spawn_ready

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]


def _add(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True)


async def test_down_without_state_removes_namespaces_and_their_processes(lab_prefix: str, tmp_path: Path) -> None:
    for name in ("hub", "a", "b"):
        _add(f"{lab_prefix}-{name}")
    _add(f"{lab_prefix}x-a")  # another lab's namespace: must survive
    try:
        # An unmarked process inside a pod (as `lab exec` would leave) and a marked one.
        unmarked = subprocess.Popen(["ip", "netns", "exec", f"{lab_prefix}-a", "sleep", "60"])
        marked = spawn_detached(
            ["ip", "netns", "exec", f"{lab_prefix}-b", "sleep", "60"],
            log=tmp_path / "b.log",
            mark=marker(lab_prefix, "b", "app"),
        )
        with trio.fail_after(20):
            done = await teardown(lab_prefix)
        assert sorted(done.namespaces) == sorted(f"{lab_prefix}-{n}" for n in ("a", "b", "hub"))
        assert set(done.stopped) >= {unmarked.pid, marked}
        assert unmarked.wait(timeout=5) != 0
        assert not is_alive(marked)
        names = await list_netns()
        assert not [n for n in names if n.startswith(f"{lab_prefix}-")]
        assert f"{lab_prefix}x-a" in names
    finally:
        subprocess.run(["ip", "netns", "del", f"{lab_prefix}x-a"], check=False)


async def test_down_finds_processes_whose_namespace_was_deleted_by_hand(lab_prefix: str, tmp_path: Path) -> None:
    _add(f"{lab_prefix}-a")
    pid = await spawn_ready(tmp_path, lab_prefix, "a", enter=["ip", "netns", "exec", f"{lab_prefix}-a"])
    assert marked_processes(lab_prefix) == {pid: f"{lab_prefix}/a/test"}
    subprocess.run(["ip", "netns", "del", f"{lab_prefix}-a"], check=True)
    assert is_alive(pid)
    with trio.fail_after(20):
        done = await teardown(lab_prefix)
    assert done.stopped == [pid] and done.namespaces == []
    assert not is_alive(pid)


async def test_down_is_idempotent_and_removes_the_state_dir(
    lab_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(f"{lab_prefix}-hub")
    lab_dir(lab_prefix).mkdir(parents=True)
    (lab_dir(lab_prefix) / "state.json").write_text("{ damaged")
    assert await trio.to_thread.run_sync(main, ["lab", "down", "--prefix", lab_prefix]) == 0
    assert capsys.readouterr().out == f"lab {lab_prefix}: stopped 0 process(es), deleted namespaces: {lab_prefix}-hub\n"
    assert not lab_dir(lab_prefix).exists()
    assert await trio.to_thread.run_sync(main, ["lab", "down", "--prefix", lab_prefix]) == 0
    assert capsys.readouterr().out == f"lab {lab_prefix}: nothing to clean up\n"


async def test_status_of_a_missing_lab_is_exit_1(lab_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await trio.to_thread.run_sync(main, ["lab", "status", "--prefix", lab_prefix]) == 1
    assert capsys.readouterr().err.startswith(f"meshctl: error: no lab with prefix {lab_prefix}: no state file")


async def test_status_of_a_crash_leftover_points_at_down(lab_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    _add(f"{lab_prefix}-a")
    assert await trio.to_thread.run_sync(main, ["lab", "status", "--prefix", lab_prefix]) == 1
    out = capsys.readouterr().out
    assert f"state file missing, but namespaces exist: {lab_prefix}-a" in out
    assert f"meshctl lab down --prefix {lab_prefix}" in out


async def test_exec_in_a_missing_pod_is_exit_1(lab_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await trio.to_thread.run_sync(main, ["lab", "exec", "--prefix", lab_prefix, "a", "--", "true"]) == 1
    assert f"no namespace {lab_prefix}-a" in capsys.readouterr().err


async def test_exec_runs_inside_the_pod_and_passes_the_exit_status(
    lab_prefix: str, capfd: pytest.CaptureFixture[str]
) -> None:
    _add(f"{lab_prefix}-a")
    argv = ["lab", "exec", "--prefix", lab_prefix, "a", "--", "sh", "-c", "ip -o link show | wc -l; exit 3"]
    assert await trio.to_thread.run_sync(main, argv) == 3
    assert capfd.readouterr().out == "1\n"  # a fresh pod namespace has only lo
