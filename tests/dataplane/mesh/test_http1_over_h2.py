"""HTTP/1.1 carried between two real proxies over one shared HTTP/2 mTLS connection (ALPN triomesh.http1-h2/1),
in process over loopback: client(s) -> hop 1 (--forward, the destination meshed with http1_over_h2) -> hop 2
(--inbound-forward) -> an HTTP/1.1 application. Real sockets, real time (OpenSSL reads the machine's clock)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import dataplane.svid.store
from dataplane.admin.schema import PER_REQUEST_PROTOCOLS
from dataplane.app import Proxy
from dataplane.http1.events import (
    NEED_DATA,
    ConnectionClosed,
    DataReceived,
    MessageEnded,
    RequestReceived,
    ResponseReceived,
)
from dataplane.http1.parser import RequestParser, ResponseParser
from dataplane.mtls.inner import CARRIED_HTTP1
from dataplane.net.addr import SockAddr
from dataplane.settings import Forward
from dataplane.tls import alpn
from tests.dataplane.mesh.test_two_hops import STRICT, proxy
from tests.dataplane.proxy_harness import free_port, loopback_server
from tests.dataplane.svid.sets import IdentityDir
from tests.dataplane.test_admin import get, http
from tests.dataplane.tls.mesh import real_pki
from tests.identity.pki import BACKEND, FRONTEND, Pki

OTHER = "spiffe://example.org/ns/default/sa/other"
OLD_PROTOCOLS = (alpn.H2, alpn.HTTP1, alpn.OPAQUE)  # a proxy from before the carriage


@dataclasses.dataclass
class App:
    """What the application saw: connections, and (method, path, body) per request."""

    connections: int = 0
    requests: list[tuple[bytes, bytes, bytes]] = dataclasses.field(default_factory=list)
    heads: list[dict[bytes, bytes]] = dataclasses.field(default_factory=list)


def _answer(method: bytes, path: bytes, body: bytes) -> tuple[bytes, bool]:
    """The application's response to a request, and whether it closes the connection after it."""
    if path == b"/chunked":
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", False
    if path == b"/empty":
        return b"HTTP/1.1 204 No Content\r\n\r\n", False
    if path == b"/close":
        return b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nbye!\n", True
    reply = b"got " + path + b" " + body
    if method == b"HEAD":
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(reply), False
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(reply), reply), False


@asynccontextmanager
async def application(app: App) -> AsyncIterator[SockAddr]:
    """An HTTP/1.1 application with keep-alive, parsing with the proxy's own strict parser."""

    async def serve(stream: trio.SocketStream) -> None:
        app.connections += 1
        parser = RequestParser()
        async with stream:
            try:
                while True:
                    event = parser.next_event()
                    if event is NEED_DATA:
                        parser.receive_data(await stream.receive_some())
                        continue
                    if isinstance(event, ConnectionClosed):
                        return
                    assert isinstance(event, RequestReceived), event
                    head = event.head
                    app.heads.append({n.lower(): v for n, v in head.headers})
                    body = b""
                    while not isinstance(event := parser.next_event(), MessageEnded):
                        if event is NEED_DATA:
                            parser.receive_data(await stream.receive_some())
                        elif isinstance(event, DataReceived):
                            body += event.data
                    app.requests.append((head.method, head.target, body))
                    response, close = _answer(head.method, head.target, body)
                    await stream.send_all(response)
                    if close:
                        return
                    parser.start_next()
            except trio.BrokenResourceError:
                pass

    async with loopback_server(serve) as addr:
        yield addr


@dataclasses.dataclass
class Hops:
    entry: SockAddr
    middle: SockAddr
    hop1: Proxy
    hop2: Proxy
    admin1: SockAddr
    admin2: SockAddr


def older_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hop 2 (its identity directory is "server") knows only the ALPN names of a proxy from before the carriage."""
    original = dataplane.svid.store.IdentityStore

    def build(directory: Path, **options: Any) -> dataplane.svid.store.IdentityStore:
        if directory.name == "server":
            options["protocols"] = OLD_PROTOCOLS
        return original(directory, **options)

    monkeypatch.setattr(dataplane.svid.store, "IdentityStore", build)


@asynccontextmanager
async def two_hops(
    tmp_path: Path, pki: Pki, app: SockAddr, *, expected: str = BACKEND, server_policy: str = STRICT
) -> AsyncIterator[Hops]:
    client_id = IdentityDir(pki, tmp_path / "client", FRONTEND)
    server_id = IdentityDir(pki, tmp_path / "server", BACKEND)
    client_id.publish()
    server_id.publish()
    entry, middle = SockAddr("127.0.0.1", free_port()), SockAddr("127.0.0.1", free_port())
    meshed = f"{{cidr: 127.0.0.1/32, ports: [{middle.port}], identity: '{expected}', http1_over_h2: true}}"
    client_policy = f"outbound:\n  meshed:\n    - {meshed}\n"
    async with (
        proxy(tmp_path, "server", server_id, server_policy, Forward(middle, app, "inbound")) as (hop2, admin2),
        proxy(tmp_path, "client", client_id, client_policy, Forward(entry, middle)) as (hop1, admin1),
    ):
        yield Hops(entry, middle, hop1, hop2, admin1, admin2)


class Client:
    """One keep-alive HTTP/1.1 client connection, responses read with the proxy's own strict parser."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.parser = ResponseParser()

    async def request(self, data: bytes, method: bytes = b"GET") -> tuple[int, dict[bytes, bytes], bytes]:
        await self.stream.send_all(data)
        self.parser.expect(method)
        status, headers, body = 0, {}, b""
        while True:
            event = self.parser.next_event()
            if event is NEED_DATA:
                self.parser.receive_data(await self.stream.receive_some())
            elif isinstance(event, ResponseReceived):
                status, headers = event.head.status, {n.lower(): v for n, v in event.head.headers}
            elif isinstance(event, DataReceived):
                body += event.data
            elif isinstance(event, MessageEnded):
                return status, headers, body
            else:
                raise AssertionError(event)


@asynccontextmanager
async def client(entry: SockAddr) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream(entry.ip, entry.port)
    async with stream:
        yield Client(stream)


def get_request(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: app\r\n{extra}\r\n".encode()


def inbound_mesh_records(hop: Proxy) -> list[tuple[str, str | None, int]]:
    """(protocol, client id, requests) of every TLS connection hop 2 has seen."""
    recs = (*hop.table.live.values(), *hop.table.recent)
    return [(rec.protocol, rec.peer_id, rec.requests) for rec in recs if rec.tls == "true"]


@pytest.fixture
def pki() -> Pki:
    return real_pki()


async def test_many_clients_share_one_mesh_connection(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    clients, each = 20, 5
    statuses: list[tuple[int, bytes]] = []

    async def one(hops: Hops, n: int) -> None:
        async with client(hops.entry) as c:
            for i in range(each):
                status, _, body = await c.request(get_request(f"/c{n}/r{i}"))
                statuses.append((status, body))

    with trio.fail_after(30):
        async with application(seen) as app, two_hops(tmp_path, pki, app) as hops:
            async with trio.open_nursery() as nursery:
                for n in range(clients):
                    nursery.start_soon(one, hops, n)
            assert len(statuses) == clients * each
            assert all(status == 200 and body.startswith(b"got /c") for status, body in statuses)
            assert hops.hop1.http.carried is not None and hops.hop1.http.carried.opened == 1
            # Hop 2 saw one mesh connection carrying every request, from hop 1's identity.
            assert inbound_mesh_records(hops.hop2) == [(CARRIED_HTTP1, FRONTEND, clients * each)]
            # Hop 1's client connections record the server's identity.
            outbound = [r for r in (*hops.hop1.table.live.values(), *hops.hop1.table.recent) if r.requests]
            assert len(outbound) == clients
            assert all((r.tls, r.peer_id, r.requests) == ("true", BACKEND, each) for r in outbound)
            # The forwarding fields reached the application.
            assert all(b"x-request-id" in h and h[b"host"] == b"app" for h in seen.heads)
            _, metrics1 = await get(hops.admin1, "/metrics")
            _, metrics2 = await get(hops.admin2, "/metrics")
            assert f'server_id="{BACKEND}"'.encode() in metrics1
            assert f'client_id="{FRONTEND}"'.encode() in metrics2 and b'tls="true"' in metrics2


async def test_bodies_both_ways_head_and_204(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app) as hops, client(hops.entry) as c:
            big = b"x" * 300_000
            status, headers, body = await c.request(
                get_request("/len", "POST", f"content-length: {len(big)}\r\n") + big
            )
            assert (status, body) == (200, b"got /len " + big)
            assert headers[b"content-length"] == str(len(body)).encode()
            chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            status, _, body = await c.request(get_request("/up", "POST", "transfer-encoding: chunked\r\n") + chunked)
            assert (status, body) == (200, b"got /up hello world")
            assert seen.requests[-1] == (b"POST", b"/up", b"hello world")
            status, headers, body = await c.request(get_request("/chunked"))
            assert (status, body) == (200, b"abcdefg")
            assert headers[b"transfer-encoding"] == b"chunked"
            status, headers, body = await c.request(get_request("/page", "HEAD"), b"HEAD")
            assert (status, headers[b"content-length"], body) == (200, b"10", b"")
            status, headers, body = await c.request(get_request("/empty"))
            assert (status, body) == (204, b"")
            assert b"content-length" not in headers and b"transfer-encoding" not in headers
            # An HTTP/1.0 client without Host: the destination is the authority; a body without a length is read
            # until the connection closes.
            status, headers10, body = await http(hops.entry, b"GET /chunked HTTP/1.0\r\n\r\n")
            assert (status, body) == (200, b"abcdefg")
            assert "Transfer-Encoding" not in headers10 and "Content-Length" not in headers10
            assert seen.heads[-1][b"host"] == str(hops.middle).encode()
            assert inbound_mesh_records(hops.hop2) == [(CARRIED_HTTP1, FRONTEND, 6)]


async def test_an_application_that_closes_and_one_that_keeps_alive(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app) as hops, client(hops.entry) as c:
            for _ in range(3):
                status, _, body = await c.request(get_request("/close"))
                assert (status, body) == (200, b"bye!\n")  # the client's connection stays open
            for i in range(3):
                status, _, body = await c.request(get_request(f"/keep{i}"))
                assert (status, body) == (200, f"got /keep{i} ".encode())
            # One application connection per closing response, then one kept alive for the rest (hop 2's
            # handler connection seeds the pool; it may be the first or an extra).
            assert 4 <= seen.connections <= 5
            assert inbound_mesh_records(hops.hop2) == [(CARRIED_HTTP1, FRONTEND, 6)]


async def test_an_older_peer_gets_http1_inside_mtls(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = App()
    with trio.fail_after(20):
        older_server(monkeypatch)
        async with application(seen) as app, two_hops(tmp_path, pki, app) as hops:
            for n in range(2):
                async with client(hops.entry) as c:
                    for i in range(2):
                        status, _, body = await c.request(get_request(f"/old{n}{i}"))
                        assert (status, body) == (200, f"got /old{n}{i} ".encode())
            carried = hops.hop1.http.carried
            assert carried is not None and carried.opened == 0 and carried.declined(hops.middle)
            records = inbound_mesh_records(hops.hop2)
            assert records and all(protocol == "http1" and peer == FRONTEND for protocol, peer, _ in records)
            assert sum(requests for _, _, requests in records) == 4
            outbound = [r for r in (*hops.hop1.table.live.values(), *hops.hop1.table.recent) if r.requests]
            assert [(r.tls, r.peer_id, r.requests) for r in outbound] == [("true", BACKEND, 2)] * 2


async def test_a_wrong_server_identity_gets_503_and_nothing_reaches_the_app(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with (
            application(seen) as app,
            two_hops(tmp_path, pki, app, expected=OTHER) as hops,
            client(hops.entry) as c,
        ):
            status, headers, _ = await c.request(get_request("/"))
            assert status == 503
            assert b"peer_identity_mismatch" in headers[b"x-triomesh-error"]
            assert seen.requests == []
            _, metrics = await get(hops.admin1, "/metrics")
            assert b'error="peer_identity_mismatch"' in metrics


async def test_upgrade_requests_keep_the_per_connection_path(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app) as hops, client(hops.entry) as c:
            status, _, _ = await c.request(get_request("/first"))
            assert status == 200
            # Expect: 100-continue goes the per-connection way (HTTP/1.1 inside mTLS): a second mesh connection.
            body = b"data"
            request = get_request("/cont", "POST", "content-length: 4\r\nexpect: 100-continue\r\n") + body
            status, _, reply = await c.request(request)
            assert (status, reply) == (200, b"got /cont data")
            protocols = sorted(protocol for protocol, _, _ in inbound_mesh_records(hops.hop2))
            assert protocols == sorted([CARRIED_HTTP1, "http1"])


async def test_per_request_authorization_and_revocation(tmp_path: Path, pki: Pki) -> None:
    rules = f"{STRICT}  authorization:\n    - {{identities: ['{FRONTEND}'], paths: ['/ok/*']}}\n"
    seen = App()
    with trio.fail_after(20):
        async with (
            application(seen) as app,
            two_hops(tmp_path, pki, app, server_policy=rules) as hops,
            client(hops.entry) as c,
        ):
            assert (await c.request(get_request("/ok/1")))[0] == 200
            status, headers, _ = await c.request(get_request("/secret"))
            assert status == 403 and headers[b"x-triomesh-error"].startswith(b"authorization denied")
            assert [path for _, path, _ in seen.requests] == [b"/ok/1"]
            # A reload that still admits the client keeps the shared connection (judged as HTTP, not as TCP).
            policy = tmp_path / "server.yaml"
            generation = hops.hop2.store.current.generation
            policy.write_text(rules + f"    - {{identities: ['{OTHER}']}}\n")
            await hops.hop2.store.wait_for_generation(generation)
            assert (await c.request(get_request("/ok/2")))[0] == 200
            assert hops.hop1.http.carried is not None and hops.hop1.http.carried.opened == 1
            # One that no longer admits it closes the mesh connection; the next request opens a new one (403).
            generation = hops.hop2.store.current.generation
            policy.write_text(f"{STRICT}  authorization: [{{identities: ['{OTHER}']}}]\n")
            await hops.hop2.store.wait_for_generation(generation)
            # The revoked connection closes on hop 2, then hop 1 sees its shared connection end (bounded above).
            while hops.hop1.http.carried.connections:
                await trio.sleep(0.01)
            records = [(r.protocol, r.close_reason) for r in hops.hop2.table.recent]
            assert (CARRIED_HTTP1, "policy_revoked") in records
            assert (await c.request(get_request("/ok/3")))[0] == 403
            assert hops.hop1.http.carried.opened == 2


def test_carried_connections_are_authorized_per_request() -> None:
    """The admin documents' list (what revocation and ``meshctl policy diff`` go by) names the carriage's protocol."""
    assert CARRIED_HTTP1 in PER_REQUEST_PROTOCOLS
