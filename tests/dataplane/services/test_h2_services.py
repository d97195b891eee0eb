"""HTTP/2 (and gRPC's grpc-timeout) to a service's virtual address: per-stream balancing over one client
connection, refused and failing endpoints retried, deadlines."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from dataplane.balance.grpc_timeout import parse_grpc_timeout
from dataplane.http2.conn import H2Connection, H2Stream
from dataplane.http2.errors import H2ErrorCode
from dataplane.net.addr import SockAddr
from tests.dataplane.services.endpoints import Endpoint, service_policy, service_proxy

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"web")]


@dataclasses.dataclass
class H2App:
    app: Endpoint
    headers: list[list[tuple[bytes, bytes]]] = dataclasses.field(default_factory=list)

    async def handle(self, stream: H2Stream) -> None:
        app = self.app
        app.requests += 1
        self.headers.append(stream.request_headers)
        while await stream.receive_data():
            pass
        if app.mode == "hang":
            await trio.sleep_forever()
        if app.mode == "reset":
            stream.reset(H2ErrorCode.REFUSED_STREAM)
            return
        status = b"503" if app.mode == "503" else b"200"
        await stream.send_headers([(b":status", status)])
        await stream.send_data(app.name.encode(), end_stream=True)


@asynccontextmanager
async def h2_endpoints(*names: str) -> AsyncIterator[list[H2App]]:
    apps = [H2App(Endpoint(name)) for name in names]
    async with trio.open_nursery() as nursery:
        for h2app in apps:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            h2app.app.address = SockAddr.from_sockname(listener.socket.getsockname())

            async def one(sock: trio.SocketStream, h2app: H2App = h2app) -> None:
                await H2Connection(sock, client_side=False).run(h2app.handle)

            nursery.start_soon(trio.serve_listeners, one, [listener])
        yield apps
        nursery.cancel_scope.cancel()


async def _get(client: H2Connection, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[bytes, bytes]:
    stream = await client.open_stream([*GET, *(extra or [])], end_stream=True)
    head = dict(await stream.receive_response())
    body = b""
    while data := await stream.receive_data():
        body += data
    return head[b":status"], body


async def test_streams_of_one_connection_are_balanced_per_stream(tmp_path: Path) -> None:
    async with h2_endpoints("a", "b", "c") as apps, trio.open_nursery() as nursery:
        async with service_proxy(tmp_path, service_policy([h.app for h in apps])) as running:
            client = H2Connection(await trio.open_tcp_stream(*running.listen), client_side=True)
            await nursery.start(client.run)
            seen: Counter[bytes] = Counter()
            for _ in range(60):
                status, body = await _get(client)
                assert status == b"200"
                seen[body] += 1
            assert set(seen) == {b"a", b"b", b"c"}, seen
        nursery.cancel_scope.cancel()


async def test_a_refused_stream_and_a_listed_status_go_to_another_endpoint(tmp_path: Path) -> None:
    extra = "      retry: {statuses: [503], conditions: [refused-stream]}\n"
    async with h2_endpoints("a", "b", "c") as apps, trio.open_nursery() as nursery:
        apps[0].app.mode = "reset"
        apps[1].app.mode = "503"
        async with service_proxy(tmp_path, service_policy([h.app for h in apps], extra=extra)) as running:
            client = H2Connection(await trio.open_tcp_stream(*running.listen), client_side=True)
            await nursery.start(client.run)
            for _ in range(20):
                assert await _get(client) == (b"200", b"c")
        nursery.cancel_scope.cancel()


async def test_grpc_timeout_bounds_the_request_and_is_passed_on_reduced(tmp_path: Path) -> None:
    extra = "      timeout: 2s\n"
    grpc = [(b"content-type", b"application/grpc"), (b"grpc-timeout", b"300m")]
    async with h2_endpoints("a") as apps, trio.open_nursery() as nursery:
        async with service_proxy(tmp_path, service_policy([h.app for h in apps], extra=extra)) as running:
            client = H2Connection(await trio.open_tcp_stream(*running.listen), client_side=True)
            await nursery.start(client.run)
            assert (await _get(client, grpc))[0] == b"200"
            sent = dict(apps[0].headers[0])[b"grpc-timeout"]
            left = parse_grpc_timeout(sent)
            assert left is not None and 0.25 <= left <= 0.3, sent
            apps[0].app.mode = "hang"
            started = trio.current_time()
            stream = await client.open_stream([*GET, *grpc], end_stream=True)
            head = dict(await stream.receive_response())
            elapsed = trio.current_time() - started
            assert head[b"grpc-status"] == b"4", head  # DEADLINE_EXCEEDED, as gRPC clients read it
            assert 0.3 <= elapsed < 0.4, elapsed
        nursery.cancel_scope.cancel()
