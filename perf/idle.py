"""Holding many idle connections through a proxy, to weigh what each one costs it.

Connections are opened in batches; after each batch the holder waits until the proxy has connected every one
of them to the upstream (counted in /proc/net/tcp), so the accept queue never overflows into SYN retries and
every connection is a complete proxied pair when the proxy's memory is read.
"""

from __future__ import annotations

import resource
import socket
from typing import Final

import trio

from dataplane.net.addr import SockAddr
from perf.probes import established_to
from perf.processes import BenchError

CLIENT_IP: Final = "127.0.0.2"  # loopback too (all of 127.0.0.0/8 is), but not the proxies' source address
BATCH: Final = 250  # connections opened at once: well under every proxy's accept backlog
PAIR_TIMEOUT: Final = 20.0  # seconds for the proxy to connect a batch upstream
_POLL: Final = 0.02


class IdleConnections:
    """``await hold(n)`` opens them; ``close()`` closes them all (also after a failure part-way)."""

    def __init__(self, target: SockAddr, upstream_port: int) -> None:
        self.target = target
        self.upstream_port = upstream_port
        self.streams: list[trio.SocketStream] = []

    async def hold(self, count: int) -> None:
        """Open ``count`` connections to the target and wait until each is paired upstream."""
        _raise_descriptor_limit(count)
        baseline = established_to(self.upstream_port)
        while len(self.streams) < count:
            batch = min(BATCH, count - len(self.streams))
            async with trio.open_nursery() as nursery:
                for _ in range(batch):
                    nursery.start_soon(self._open_one)
            await self._wait_paired(baseline + len(self.streams))

    async def _open_one(self) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # From a source address of our own: the kernel reuses an ephemeral port for connections to different
            # destinations, so with thousands of connections some of ours would share 127.0.0.1:port with a
            # proxy's upstream socket, and triomesh's loop guard (keyed on that address alone) would refuse them.
            await sock.bind((CLIENT_IP, 0))
            await sock.connect((self.target.ip, self.target.port))
        except BaseException:
            sock.close()
            raise
        self.streams.append(trio.SocketStream(sock))

    async def _wait_paired(self, wanted: int) -> None:
        with trio.move_on_after(PAIR_TIMEOUT):
            while established_to(self.upstream_port) < wanted:  # noqa: ASYNC110 - polls a kernel table
                await trio.sleep(_POLL)
            return
        have = established_to(self.upstream_port)
        raise BenchError(f"the proxy paired only {have} of {wanted} connections within {PAIR_TIMEOUT:g}s")

    def close(self) -> None:
        for stream in self.streams:
            stream.socket.close()
        self.streams.clear()


def _raise_descriptor_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + 1024
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"{count} idle connections need {needed} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
