"""Listener ports of a run come from below the ephemeral range, free on every address, never twice in a row."""

from __future__ import annotations

import socket
from pathlib import Path

from perf.processes import free_port


def test_free_ports_are_below_the_ephemeral_range_and_free_on_the_wildcard_address() -> None:
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < ephemeral_start for port in ports)
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", ports[-1]))  # what triomesh's transparent listeners bind


def test_a_port_in_use_on_another_loopback_address_is_skipped() -> None:
    with socket.socket() as held:
        # Whatever the cursor hands out next is taken on 127.0.0.2 first: the wildcard bind must skip it.
        probe = free_port()
        held.bind(("127.0.0.2", probe + 1))
        following = free_port()
        assert following not in (probe, probe + 1)
