"""An H2Connection client/server pair over a real loopback TCP connection, and small request helpers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import trio

from dataplane.http2.conn import H2Connection, H2Settings, H2Stream, StreamHandler
from dataplane.http2.counters import H2Counters
from tests.dataplane.sockets import tcp_pair

Header = tuple[bytes, bytes]
P = ParamSpec("P")
T = TypeVar("T")


def deadline(seconds: float) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Fail the test after ``seconds`` instead of hanging (real sockets: autojump_clock would fire early)."""

    def decorate(test: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(test)
        async def bounded(*args: P.args, **kwargs: P.kwargs) -> T:
            with trio.fail_after(seconds):
                return await test(*args, **kwargs)

        return bounded

    return decorate


def request(path: bytes = b"/", method: bytes = b"GET", authority: bytes = b"example.test") -> list[Header]:
    return [(b":method", method), (b":scheme", b"http"), (b":path", path), (b":authority", authority)]


async def echo(stream: H2Stream) -> None:
    """Answers 200 with the request body and, if the request had trailers, the same trailers."""
    await stream.send_headers([(b":status", b"200")])
    while chunk := await stream.receive_data():
        await stream.send_data(chunk)
    if stream.trailers:
        await stream.send_trailers(stream.trailers)
    else:
        await stream.end()


async def read_body(stream: H2Stream) -> bytes:
    body = bytearray()
    while chunk := await stream.receive_data():
        body += chunk
    return bytes(body)


class Pair:
    def __init__(self, client: H2Connection, server: H2Connection) -> None:
        self.client = client
        self.server = server


@asynccontextmanager
async def h2_pair(
    handler: StreamHandler,
    *,
    server_settings: H2Settings | None = None,
    client_settings: H2Settings | None = None,
) -> AsyncIterator[Pair]:
    """Both ends running in a nursery that is cancelled when the block exits (the test closes first)."""
    client_sock, server_sock = await tcp_pair()
    client = H2Connection(client_sock, client_side=True, settings=client_settings)
    server = H2Connection(server_sock, client_side=False, settings=server_settings, counters=H2Counters())
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, handler)
        await nursery.start(client.run)
        yield Pair(client, server)
        nursery.cancel_scope.cancel()
