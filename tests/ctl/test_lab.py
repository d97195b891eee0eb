"""The lab with the real parts: mesh-init rules, mesh-proxy as UID 1337, demo apps, traffic through proxies.

Processes started by the lab run the installed copy in this interpreter's virtualenv (``make setup``).
"""

from __future__ import annotations

import os
import re
import signal
from functools import partial

import pytest
import trio

from ctl.__main__ import main
from ctl.lab.lab import Lab, Pod
from ctl.lab.network import list_netns
from ctl.lab.processes import is_alive, marked_processes
from ctl.lab.state import lab_dir, load_state, state_path
from ctl.lab.status import lab_status
from ctl.lab.talk import talk
from ctl.lab.topology import Mode
from dataplane.admin.schema import ConnectionInfo

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

UP_TIMEOUT = 60  # seconds for lab up; it takes about two


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _conns(pod: Pod) -> list[ConnectionInfo]:
    report = await trio.to_thread.run_sync(pod.admin().connections)
    return [*report.open, *report.recent]


async def _exchange_through_proxies(a: Pod, b: Pod, host: str, mode: Mode) -> None:
    with trio.fail_after(10):
        greeting, echo = await talk(a.netns, host, 8080, ["ping"])
    assert greeting.startswith(f"hello from b ({_bracket(host)}:8080); you are ")
    assert echo == "b echoes: ping"
    peer = greeting.rpartition("you are ")[2]
    if mode is Mode.TPROXY:
        # TPROXY keeps the client's own address all the way to the server.
        a_host = a.address if ":" not in host else a.ipv6
        assert peer.rpartition(":")[0] == _bracket(a_host or "")
    target = f"{_bracket(host)}:8080"
    # Both proxies carried it: a's outbound side and b's inbound side, with the bytes each way.
    with trio.fail_after(10):
        outbound = [c for c in await _conns(a) if c.direction == "outbound" and c.original_dst == target]
        inbound = [c for c in await _conns(b) if c.direction == "inbound" and c.original_dst == target]
    assert outbound, "pod a's proxy did not see the connection"
    assert inbound, "pod b's proxy did not see the connection"
    for conn in (outbound[0], inbound[0]):
        if conn.state == "closed":  # final counts are complete
            assert conn.bytes_to_upstream == len(b"ping\n")
            assert conn.bytes_to_client == len(f"{greeting}\n{echo}\n".encode())


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY])
async def test_lab_up_carries_traffic_through_both_proxies_and_down_leaves_nothing(
    lab_prefix: str, mode: Mode, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = Lab(lab_prefix, 2, mode, ipv6=True)
    with trio.fail_after(UP_TIMEOUT):
        state = await lab.up()
    try:
        status = await lab_status(lab_prefix)
        assert status.healthy, status
        assert [(p.proxy, p.app) for p in status.pods] == [("ready", "listening on 8080")] * 2
        a, b = lab.pod("a"), lab.pod("b")
        await _exchange_through_proxies(a, b, b.address, mode)
        assert b.ipv6 is not None
        await _exchange_through_proxies(a, b, b.ipv6, mode)
        # meshctl conns --pod shows the same table.
        argv = ["conns", "--pod", "a", "--lab-prefix", lab_prefix]
        assert await trio.to_thread.run_sync(main, argv) == 0
        assert f"{b.address}:8080" in capsys.readouterr().out
    finally:
        await lab.down()
    assert not [name for name in await list_netns() if name.startswith(f"{lab_prefix}-")]
    assert marked_processes(lab_prefix) == {}
    for pod in state.pods:
        assert pod.proxy_pid is not None and not is_alive(pod.proxy_pid)
        assert pod.app_pid is not None and not is_alive(pod.app_pid)
    assert not lab_dir(lab_prefix).exists()


async def test_cli_lab_lifecycle_and_down_after_a_crash(lab_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = partial(trio.to_thread.run_sync, main)
    with trio.fail_after(UP_TIMEOUT):
        assert await run(["lab", "up", "--prefix", lab_prefix, "--pods", "1", "--no-ipv6"]) == 0
    out = capsys.readouterr().out
    assert f"lab {lab_prefix}: mode redirect, 1 pod(s)" in out and "ready" in out
    assert await run(["lab", "up", "--prefix", lab_prefix]) == 1
    assert f"lab {lab_prefix} is already up" in capsys.readouterr().err
    assert await run(["lab", "status", "--prefix", lab_prefix]) == 0
    assert "listening on 8080" in capsys.readouterr().out

    # Crash: the proxy is killed by hand and the state file is lost.
    state = load_state(lab_prefix)
    assert state is not None and state.pods[0].proxy_pid is not None
    os.kill(state.pods[0].proxy_pid, signal.SIGKILL)
    state_path(lab_prefix).unlink()
    assert await run(["lab", "status", "--prefix", lab_prefix]) == 1
    assert "state file missing" in capsys.readouterr().out

    assert await run(["lab", "down", "--prefix", lab_prefix]) == 0
    assert f"deleted namespaces: {lab_prefix}-a, {lab_prefix}-hub" in capsys.readouterr().out
    assert not [name for name in await list_netns() if name.startswith(f"{lab_prefix}-")]
    assert marked_processes(lab_prefix) == {}
    assert state.pods[0].app_pid is not None and not is_alive(state.pods[0].app_pid)


async def test_demo_runs_and_cleans_up(lab_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(UP_TIMEOUT):
        assert await trio.to_thread.run_sync(main, ["lab", "demo", "--prefix", lab_prefix, "--mode", "tproxy"]) == 0
    out = capsys.readouterr().out
    headings = ("1. lab up", "2. traffic", "3. HTTP/1.1", "4. connection tables", "5. metrics excerpt", "6. lab down")
    for heading in headings:
        assert f"== {heading}" in out
    assert "< hello from b (198.18.7.12:8080); you are 198.18.7.11:" in out
    assert "< a echoes: ping from c" in out
    # HTTP through both proxies: the request id the outbound proxy set survives the inbound one, and under
    # TPROXY the server's proxy sees the calling pod's own address.
    assert re.search(r"< b answers GET /again \(x-request-id=[0-9a-f-]{36}, x-forwarded-for=198\.18\.7\.11,", out)
    assert re.search(r" http1 +\S+ +2 ", out)  # the connection table's PROTO, MTLS PEER and REQS columns
    assert "FAILED" not in out
    assert "tcp_open_total" in out
    assert re.search(
        r'response_total\{authority="198.18.7.12:8081",classification="success",client_id="[^"]*",direction="inbound"',
        out,
    )
    assert not [name for name in await list_netns() if name.startswith(f"{lab_prefix}-")]
