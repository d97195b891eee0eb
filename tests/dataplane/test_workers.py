"""mesh-proxy --workers: supervision, restart, merged admin answers, drain. Real processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec
import pytest

from dataplane.admin.schema import ConnectionsReport, StatusReport
from tests.dataplane.proxy_harness import free_port


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(predicate: object, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout  # noqa: TID251 - a sync test waiting on another process
    while time.monotonic() < deadline:  # noqa: TID251
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)  # noqa: TID251
    raise AssertionError("timed out")


def _worker_pids(supervisor: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False).stdout
    return sorted(int(p) for p in out.split())


@contextmanager
def proxy(workers: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    admin = free_port()
    argv = [
        sys.executable, "-m", "dataplane", "--workers", str(workers), "--mark", "0", "--ipv6", "off",
        "--admin", f"127.0.0.1:{admin}", "--outbound-port", str(free_port()), "--inbound-port", str(free_port()),
        "--drain-timeout", "2s",
    ]  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; a pipe nobody reads could fill and block
    proc = subprocess.Popen(argv, stderr=log)
    try:
        _wait(lambda: _ready(admin))
        yield proc, admin
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _ready(admin: int) -> bool:
    try:
        return _get(admin, "/ready")[0] == 200
    except OSError:
        return False


def test_workers_start_and_the_admin_merges_them() -> None:
    with proxy(2) as (proc, admin):
        assert len(_worker_pids(proc.pid)) == 2
        status = msgspec.json.decode(_get(admin, "/status")[1], type=StatusReport)
        assert (status.workers, status.pid, status.ready) == (2, proc.pid, True)
        conns = msgspec.json.decode(_get(admin, "/connections")[1], type=ConnectionsReport)
        assert conns.open == []
        metrics = _get(admin, "/metrics")[1].decode()
        assert 'triomesh_workers{state="running"} 2.0' in metrics
        assert "triomesh_ready 1.0" in metrics
        assert _get(admin, "/config")[0] == 200


def test_a_dead_worker_is_restarted() -> None:
    with proxy(2) as (proc, admin):
        first = _worker_pids(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        _wait(lambda: len(_worker_pids(proc.pid)) == 2 and _worker_pids(proc.pid) != first and _ready(admin))
        assert "triomesh_worker_restarts_total 1.0" in _get(admin, "/metrics")[1].decode()
        assert proc.poll() is None


def test_sigterm_drains_every_worker_and_exits_0() -> None:
    with proxy(2) as (proc, _admin):
        workers = _worker_pids(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_workers_exit_when_the_supervisor_is_killed() -> None:
    with proxy(2) as (proc, _admin):
        workers = _worker_pids(proc.pid)
        proc.kill()
        proc.wait()

        def gone() -> bool:
            try:
                for pid in workers:
                    os.kill(pid, 0)
            except ProcessLookupError:
                return all(not os.path.exists(f"/proc/{pid}") for pid in workers)
            return False

        _wait(gone)


def test_bad_worker_count_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dataplane", "--workers", "0"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr
