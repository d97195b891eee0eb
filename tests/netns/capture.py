"""A packet capture on a lab's bridge with tshark (Debian package tshark), and what it shows: the TCP payload of
every flow between pods, byte for byte, and the TLS ClientHellos with the ALPN they offered."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ctl.lab.lab import Lab
from ctl.lab.topology import BRIDGE
from ctl.netns import entered_netns
from tests.tools import need

START_TIMEOUT = 20  # seconds for tshark to capture a datagram; it takes about one
STOP_TIMEOUT = 10
SYNC_PORT = 9  # discard: nothing listens, the datagram only has to cross the bridge


@dataclass
class Flow:
    """One direction of one TCP connection: ``src`` -> ``dst`` (``ip:port``), its payload in capture order."""

    src: str
    dst: str
    payload: bytearray = field(default_factory=bytearray)


@asynccontextmanager
async def capture(the_lab: Lab, pcap: Path) -> AsyncIterator[None]:
    """tshark on the lab's bridge (in the hub namespace: every packet between pods crosses it) into ``pcap``,
    covering everything the body sends.

    tshark says "Capturing on" before its capture process has the interface, and on SIGINT it drops what it
    has not written yet, so neither its words nor a sleep bound the capture: a UDP datagram between two pods,
    repeated until the file holds it, does, once at the start and once at the end.
    """
    hub = the_lab.topology.hub_netns
    argv = ["ip", "netns", "exec", hub, need("tshark"), "-i", BRIDGE, "-w", str(pcap), "-q"]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _until_captured(the_lab, pcap, proc, b"start")
        yield
        await _until_captured(the_lab, pcap, proc, b"end")
    finally:
        with trio.CancelScope(shield=True):
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(STOP_TIMEOUT) as waiting:
                await proc.wait()
            if waiting.cancelled_caught:
                proc.kill()
                await proc.wait()


async def _until_captured(the_lab: Lab, pcap: Path, proc: trio.Process, what: bytes) -> None:
    """Sends a datagram from the first pod to the last one every 100 ms until ``pcap`` holds it (the file
    stores packets whole, so its bytes show it)."""
    token = b"tlm-capture-" + what + b"-" + secrets.token_hex(8).encode()
    first, last = the_lab.pods[0], the_lab.pods[-1]
    with entered_netns(first.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock, trio.fail_after(START_TIMEOUT):
        while not (pcap.exists() and token in pcap.read_bytes()):
            assert proc.returncode is None, f"tshark exited with {proc.returncode}"
            sock.sendto(token, (last.address, SYNC_PORT))
            await trio.sleep(0.1)


async def _fields(
    pcap: Path, names: Sequence[str], *, display_filter: str, tls_ports: Sequence[int] = ()
) -> list[list[str]]:
    decode_as = [arg for port in tls_ports for arg in ("-d", f"tcp.port=={port},tls")]
    argv = [need("tshark"), "-r", str(pcap), *decode_as, "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    argv += [arg for name in names for arg in ("-e", name)]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return [line.split("\t") for line in done.stdout.decode().splitlines() if line]


def _address(ipv4: str, ipv6: str, port: str) -> str:
    return f"{ipv4}:{port}" if ipv4 else f"[{ipv6}]:{port}"


async def flows(pcap: Path) -> list[Flow]:
    """Every TCP flow direction that carried payload, with the bytes it carried (retransmissions included)."""
    names = ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", "tcp.payload"]
    found: dict[tuple[str, str], Flow] = {}
    for stream, ip_src, ip6_src, sport, ip_dst, ip6_dst, dport, payload in await _fields(
        pcap, names, display_filter="tcp.len > 0"
    ):
        src, dst = _address(ip_src, ip6_src, sport), _address(ip_dst, ip6_dst, dport)
        flow = found.setdefault((stream, src), Flow(src, dst))
        flow.payload += bytes.fromhex(payload.replace(":", ""))
    return list(found.values())


async def client_hellos(pcap: Path, ports: Sequence[int]) -> list[tuple[str, str]]:
    """(destination ``ip:port``, offered ALPN protocols) of every TLS ClientHello to ``ports``."""
    names = ["ip.dst", "ipv6.dst", "tcp.dstport", "tls.handshake.extensions_alpn_str"]
    rows = await _fields(pcap, names, display_filter="tls.handshake.type == 1", tls_ports=ports)
    return [(_address(ip, ip6, port), alpn) for ip, ip6, port, alpn in rows]
