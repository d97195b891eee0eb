"""mesh-proxy as a process inside a pod: the redirect-loop guard, SIGTERM drain, drain timeout.

Each test replaces pod a's lab proxy with one it starts itself, so it controls the flags and sees the exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
import trio

from ctl.lab.lab import Pod
from ctl.lab.processes import stop
from ctl.lab.topology import Mode
from tests.netns.labs import connect_from, connections, lab, samples, tcp_labels

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

APP_PORT = 8080


@asynccontextmanager
async def own_proxy(pod: Pod, log: Path, *flags: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Stop the lab's proxy in ``pod`` and run ``mesh-proxy FLAGS`` there as root instead."""
    mesh_proxy = os.path.join(sys.prefix, "bin", "mesh-proxy")
    with log.open("wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", pod.netns, mesh_proxy, *flags], stdout=out, stderr=out)
    try:
        with trio.fail_after(20):
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"mesh-proxy exited {proc.returncode}: {log.read_text()}")
                ok, _ = await trio.to_thread.run_sync(_ready, pod)
                if ok:
                    break
                await trio.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ready(pod: Pod) -> tuple[bool, str]:
    try:
        return pod.admin(timeout=1).ready()
    except Exception as exc:  # not listening yet
        return False, str(exc)


@asynccontextmanager
async def lab_without_proxy_in_a(name: str) -> AsyncIterator[tuple[Pod, Pod]]:
    """Pod a's proxy is replaced by the test's own, without an identity: the lab is plaintext (a strict pod b
    would refuse it)."""
    async with lab(name, Mode.REDIRECT, mtls=False) as the_lab:
        assert the_lab.state is not None
        pid = next(p.proxy_pid for p in the_lab.state.pods if p.name == "a")
        assert pid is not None
        await stop([pid])
        yield the_lab.pod("a"), the_lab.pod("b")


async def _greeting(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


async def test_proxy_whose_traffic_is_intercepted_refuses_the_loop(tmp_path: Path) -> None:
    """Running as root with a mark mesh-init does not exempt, every upstream connect comes straight back."""
    async with lab_without_proxy_in_a("lp") as (a, b):
        log = tmp_path / "proxy.log"
        async with own_proxy(a, log, "--mark", "0x7", "--drain-timeout", "1s"):
            # The application never reaches b: it sees a reset (or at worst an empty close), never a greeting. The
            # reset can beat the client's own check of its connect, which then fails with ECONNRESET.
            got = b""
            with trio.fail_after(10):
                try:
                    stream = await connect_from(a, b.address, APP_PORT)
                except ConnectionResetError:
                    pass
                else:
                    with suppress(trio.BrokenResourceError):
                        got = await _greeting(stream)
                    await stream.aclose()
            assert b"hello" not in got
            await trio.sleep(0.5)  # a recursing proxy would open connection after connection meanwhile
            report = await connections(a)
            reasons = sorted(c.close_reason or "" for c in report.recent)
            assert report.opened_total == 2, reasons
            assert reasons == ["redirect_loop", "upstream_reset"]
            closed = await samples(a, "triomesh_connections_closed_total")
            assert closed[(("direction", "outbound"), ("reason", "redirect_loop"))] == 1
        assert "intercepted again" in log.read_text()


async def test_sigterm_drains_open_connections_and_exits_0(tmp_path: Path) -> None:
    async with lab_without_proxy_in_a("dr") as (a, b):
        log = tmp_path / "proxy.log"
        async with own_proxy(a, log, "--drain-timeout", "30s") as proc:
            stream = await connect_from(a, b.address, APP_PORT)
            assert (await _greeting(stream)).startswith(b"hello from b")
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(5):
                while (await trio.to_thread.run_sync(_ready, a))[0]:
                    await trio.sleep(0.05)
            assert "draining" in (await trio.to_thread.run_sync(_ready, a))[1]
            # New connections are refused at once: the listener is closed.
            with trio.fail_after(5), pytest.raises(OSError):
                await connect_from(a, b.address, APP_PORT)
            # The open one keeps working until its client is done.
            await stream.send_all(b"still there?\n")
            assert await _greeting(stream) == b"b echoes: still there?\n"
            assert proc.poll() is None
            await stream.send_eof()
            await _greeting(stream)
            await stream.aclose()
            with trio.fail_after(10):
                while proc.poll() is None:
                    await trio.sleep(0.05)
            assert proc.returncode == 0, log.read_text()
        assert "drained; exiting" in log.read_text()


async def test_drain_timeout_closes_what_is_left_and_exits_0(tmp_path: Path) -> None:
    async with lab_without_proxy_in_a("dt") as (a, b):
        log = tmp_path / "proxy.log"
        async with own_proxy(a, log, "--drain-timeout", "1s") as proc:
            stream = await connect_from(a, b.address, APP_PORT)
            assert (await _greeting(stream)).startswith(b"hello from b")
            start = trio.current_time()
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await stream.receive_some(100) == b""  # closed with a FIN at the deadline
                while proc.poll() is None:
                    await trio.sleep(0.05)
            assert 0.9 <= trio.current_time() - start <= 5
            assert proc.returncode == 0
        assert "drain timeout: closing 1 connections" in log.read_text()


async def test_connect_timeout_from_policy_resets_the_client(tmp_path: Path) -> None:
    """An upstream that drops SYNs: the policy's connect timeout ends the attempt and the client sees a reset."""
    async with lab_without_proxy_in_a("ct") as (a, b):
        # raw PREROUTING: before pod b's own interception, so the SYN never reaches b's sidecar either.
        drop = ["iptables", "-t", "raw", "-I", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "DROP"]
        subprocess.run(["ip", "netns", "exec", b.netns, *drop], check=True)
        policy = tmp_path / "policy.yaml"
        policy.write_text("version: 1\ntimeouts:\n  connect: 300ms\n")
        async with own_proxy(a, tmp_path / "proxy.log", "--policy", str(policy)):
            stream = await connect_from(a, b.address, 9999)
            start = trio.current_time()
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
                await stream.receive_some(10)
            waited = trio.current_time() - start
            assert isinstance(info.value.__cause__, ConnectionResetError)
            assert 0.3 - 0.05 <= waited <= 0.3 + 0.1  # within 100 ms of the configured value (reliability.md G5)
            rec = (await connections(a)).recent[0]
            assert (rec.close_reason, rec.errno) == ("connect_timeout", "ETIMEDOUT")
            assert rec.original_dst == f"{b.address}:9999"


async def test_two_workers_share_the_traffic_and_report_it_as_one_proxy(tmp_path: Path) -> None:
    """Intercepted connections spread over both workers; every byte arrives (half-close included); the
    supervisor's /connections and /metrics add the workers up."""
    async with lab_without_proxy_in_a("wk") as (a, b), own_proxy(a, tmp_path / "proxy.log", "--workers", "2"):
        count = 24
        for i in range(count):
            stream = await connect_from(a, b.address, APP_PORT)
            assert (await _greeting(stream)).startswith(b"hello from b")
            line = f"message {i} " + "x" * 5000 + "\n"
            await stream.send_all(line.encode())
            await stream.send_eof()  # half-close: the echo still comes back
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
            assert answer == f"b echoes: {line}".encode()
            await stream.aclose()
        with trio.fail_after(10):
            while (report := await connections(a)).open:
                await trio.sleep(0.05)
        target = f"{b.address}:{APP_PORT}"
        ours = [c for c in report.recent if c.original_dst == target]
        assert len(ours) == count and report.opened_total == count
        assert {c.worker for c in ours} == {0, 1}, "SO_REUSEPORT never used the second worker"
        assert len({c.id for c in ours}) == count
        assert all(c.close_reason == "completed" for c in ours)
        opened = await samples(a, "tcp_open_total")
        assert opened[tcp_labels("outbound", "src", target, b.address, APP_PORT)] == count
        running = await samples(a, "triomesh_workers")
        assert running[(("state", "running"),)] == 2
