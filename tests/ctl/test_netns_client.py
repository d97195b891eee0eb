"""``--netns``: the admin socket is opened inside the namespace, so only a server there answers."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import msgspec
import pytest
import trio

from ctl.__main__ import main
from ctl.netns import netns_socket
from dataplane.admin.schema import StatusReport
from tests.ctl.admin_standin import StandIn, healthy_answers, sample_status

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]


@pytest.fixture
def netns(lab_prefix: str) -> Iterator[str]:
    name = f"{lab_prefix}-a"  # a lab pod name, so the lab_prefix teardown also removes it
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def _listener_in(netns: str) -> socket.socket:
    sock = netns_socket(netns, socket.AF_INET)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


async def test_netns_reaches_the_server_inside_and_only_there(
    netns: str, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    port = await nursery.start(StandIn(healthy_answers()).serve, _listener_in(netns))
    url = f"http://127.0.0.1:{port}"
    assert await trio.to_thread.run_sync(main, ["--netns", netns, "--admin", url, "status", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out, type=StatusReport) == sample_status()
    # The same address in meshctl's own namespace has no server.
    assert await trio.to_thread.run_sync(main, ["--admin", url, "status"]) == 1
    assert "connection refused" in capsys.readouterr().err


async def test_pod_is_short_for_the_lab_namespace(
    netns: str, lab_prefix: str, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    port = await nursery.start(StandIn(healthy_answers()).serve, _listener_in(netns))
    argv = ["conns", "--pod", "a", "--lab-prefix", lab_prefix, "--admin", f"127.0.0.1:{port}"]
    assert await trio.to_thread.run_sync(main, argv) == 0
    assert capsys.readouterr().out.startswith("2 open, 1 recently closed")


async def test_thread_returns_to_its_own_namespace(netns: str) -> None:
    def own_namespace() -> int:
        return os.stat("/proc/thread-self/ns/net").st_ino

    before = await trio.to_thread.run_sync(own_namespace)
    await trio.to_thread.run_sync(_listener_in, netns)
    assert await trio.to_thread.run_sync(own_namespace) == before


async def test_refused_inside_the_namespace_names_it(netns: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await trio.to_thread.run_sync(main, ["--netns", netns, "--admin", "127.0.0.1:9", "conns"]) == 1
    assert capsys.readouterr().err == (
        f"meshctl: error: cannot reach the proxy admin endpoint at http://127.0.0.1:9 in network namespace"
        f" {netns}: connection refused (is mesh-proxy running?)\n"
    )
