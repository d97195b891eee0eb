"""Helpers for end-to-end tests in a real lab: pods as namespaces, mesh-init rules, mesh-proxy as UID 1337."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from ctl.lab.lab import Lab, Pod
from ctl.lab.topology import Mode
from ctl.netns import netns_socket
from dataplane.admin.schema import ConnectionInfo, ConnectionsReport
from dataplane.http2.conn import H2Connection, H2Stream
from dataplane.http2.counters import H2Counters
from dataplane.http2.errors import H2Error

UP_TIMEOUT = 60


@asynccontextmanager
async def lab(
    name: str,
    mode: Mode,
    pods: int = 2,
    *,
    mtls: bool = True,
    prefix: str = "tm",
    service: bool = False,
    weights: Sequence[int] | None = None,
) -> AsyncIterator[Lab]:
    """A lab with a per-test prefix (short: namespace and link names are limited to 15 characters); strict mTLS
    between its pods unless ``mtls`` is False, as ``meshctl lab up`` builds it; with ``service``, pod a is the
    client of the service over the other pods (``meshctl lab up --service --weights ...``)."""
    the_lab = Lab(
        f"{prefix}{name}{os.getpid() % 1000}", pods, mode, ipv6=True, mtls=mtls, service=service, weights=weights
    )
    with trio.fail_after(UP_TIMEOUT):
        await the_lab.up()
    try:
        yield the_lab
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(UP_TIMEOUT):
            await the_lab.down()


def bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


async def listen_in(pod: Pod, ip: str, port: int) -> trio.SocketListener:
    """A listening socket inside ``pod``, owned by this (root) test process: the pod's application."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = netns_socket(pod.netns, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(16)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


async def connect_from(pod: Pod, ip: str, port: int) -> trio.SocketStream:
    """Connect from inside ``pod`` as an application would (not UID 1337, no mark: intercepted)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = trio.socket.from_stdlib_socket(netns_socket(pod.netns, family))
    try:
        await sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def connections(pod: Pod) -> ConnectionsReport:
    return await trio.to_thread.run_sync(pod.admin().connections)


def find(conns: list[ConnectionInfo], direction: str, original_dst: str) -> list[ConnectionInfo]:
    return [c for c in conns if c.direction == direction and c.original_dst == original_dst]


async def samples(pod: Pod, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric ``name`` (full sample name) from the pod's proxy, keyed by sorted labels."""
    text = await trio.to_thread.run_sync(pod.admin().metrics)
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def tcp_labels(
    direction: str, peer: str, target: str, ip: str, port: int, *, peer_id: str | None = None
) -> tuple[tuple[str, str], ...]:
    """A TCP metric's labels; ``peer_id``: the identity verified at the other end (the client's inbound, the
    server's outbound) when the connection went over mesh mTLS, None for plaintext."""
    inbound = direction == "inbound"
    labels = {
        "direction": direction,
        "peer": peer,
        "target_addr": target,
        "target_ip": ip,
        "target_port": str(port),
        "tls": "no_identity" if peer_id is None else "true",
        "client_id": (peer_id or "") if inbound else "",
        "server_id": "" if inbound else (peer_id or ""),
    }
    return tuple(sorted(labels.items()))


REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def app_in(pod: Pod, module: str, *args: str) -> AsyncIterator[None]:
    """``python -m tests.apps.<module>`` serving inside ``pod`` (as root: its traffic is intercepted)."""
    argv = ["ip", "netns", "exec", pod.netns, sys.executable, "-m", f"tests.apps.{module}", *args]
    proc = await trio.lowlevel.open_process(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await trio.sleep(1.0)  # the servers bind within a few hundred ms; a client's first connect retries anyway
        assert proc.returncode is None, f"{module} exited with {proc.returncode}"
        yield
    finally:
        proc.kill()
        await proc.wait()


async def run_in(pod: Pod, *argv: str) -> str:
    done = await trio.run_process(
        ["ip", "netns", "exec", pod.netns, *argv], cwd=REPO, capture_stdout=True, capture_stderr=True, check=False
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, out[-2000:]
    return out


async def serve_h2(listener: trio.SocketListener, handler: Callable[[H2Stream], Awaitable[None]]) -> None:
    """An h2c (prior knowledge) server on ``listener`` whose streams ``handler`` answers, until cancelled."""

    async def one(stream: trio.SocketStream) -> None:
        with contextlib.suppress(H2Error):
            await H2Connection(stream, client_side=False, counters=H2Counters()).run(handler)

    await trio.serve_listeners(one, [listener])
