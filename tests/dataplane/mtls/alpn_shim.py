"""A relay that adds the mesh ALPN to a scanner's ClientHello, so a scanner that cannot offer ALPN (sslscan) gets
past the strict port's "is this a mesh ClientHello" gate and probes the TLS versions the proxy accepts.

The hello is changed, so the TLS 1.3 transcripts of the two ends differ and no TLS 1.3 handshake through the
shim can finish: the scan can learn the versions (from the ServerHello or the alert), nothing after them.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

from dataplane.detect.client_hello import first_record_end

_ALPN_EXTENSION: Final = 16
_SHIM_TIMEOUT: Final = 30.0  # one scanner connection at most


def with_alpn(record: bytes, protocol: str) -> bytes | None:
    """The single-record ClientHello ``record`` offering ``protocol`` by ALPN; None when ``record`` is not one
    ClientHello in one record, or already offers ALPN. Pure."""
    if len(record) < 9 or record[0] != 0x16 or record[5] != 1:
        return None
    body = record[9:]
    if int.from_bytes(record[3:5], "big") != len(record) - 5 or int.from_bytes(record[6:9], "big") != len(body):
        return None
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    extensions = body[pos + 2 :] if pos < len(body) else b""
    scan = 0
    while scan + 4 <= len(extensions):
        if int.from_bytes(extensions[scan : scan + 2], "big") == _ALPN_EXTENSION:
            return None
        scan += 4 + int.from_bytes(extensions[scan + 2 : scan + 4], "big")
    name = protocol.encode("ascii")
    names = bytes([len(name)]) + name
    alpn = _ALPN_EXTENSION.to_bytes(2, "big") + (len(names) + 2).to_bytes(2, "big") + len(names).to_bytes(2, "big")
    extensions += alpn + names
    body = body[:pos] + len(extensions).to_bytes(2, "big") + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return record[:3] + len(handshake).to_bytes(2, "big") + handshake


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some():
            await sink.send_all(data)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _relay(target: int, protocol: str, client: trio.SocketStream) -> None:
    async with client:
        with trio.move_on_after(_SHIM_TIMEOUT):
            first = b""
            while (end := first_record_end(first)) is None or len(first) < end:
                if (len(first) >= 5 and end is None) or not (data := await client.receive_some()):
                    break  # not a TLS handshake record (an SSL 2 probe): passed on as it is
                first += data
            upstream = await trio.open_tcp_stream("127.0.0.1", target)
            async with upstream:
                await upstream.send_all(with_alpn(first, protocol) or first)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, upstream)
                    nursery.start_soon(_pump, upstream, client)


@asynccontextmanager
async def alpn_shim(target: int, protocol: str) -> AsyncIterator[int]:
    """A loopback port relaying to 127.0.0.1:``target``, adding ``protocol`` to each ClientHello; yields it."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, functools.partial(_relay, target, protocol), listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()
