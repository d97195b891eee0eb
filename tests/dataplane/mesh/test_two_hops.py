"""Mesh mTLS through two real proxies in process: client -> hop 1 (--forward, the destination meshed) -> mTLS ->
hop 2 (--inbound-forward, strict or permissive) -> application, over loopback, in real time (OpenSSL reads the
machine's clock). Authorization, the identities each side records, a wrong server identity, and revocation on a
policy reload."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from dataplane.app import Proxy
from dataplane.net.addr import SockAddr
from dataplane.settings import Forward
from tests.dataplane.proxy_harness import free_port, loopback_server
from tests.dataplane.svid.sets import IdentityDir
from tests.dataplane.test_admin import _settings, get, http
from tests.dataplane.tls.mesh import real_pki
from tests.identity.pki import BACKEND, FRONTEND, Pki

OTHER = "spiffe://example.org/ns/default/sa/other"
STRICT = "inbound:\n  mtls: strict\n"


@dataclasses.dataclass
class App:
    """What reached the application: connections and bytes (an HTTP server answering 200, or an echo)."""

    connections: int = 0
    received: bytes = b""


@asynccontextmanager
async def application(app: App, *, echo: bool = False) -> AsyncIterator[SockAddr]:
    async def serve(stream: trio.SocketStream) -> None:
        app.connections += 1
        async with stream:
            try:
                while data := await stream.receive_some():
                    app.received += data
                    if echo:
                        await stream.send_all(data)
                    elif b"\r\n\r\n" in data:
                        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                        return
            except trio.BrokenResourceError:
                pass

    async with loopback_server(serve) as addr:
        yield addr


@dataclasses.dataclass
class Hops:
    entry: SockAddr
    """Where the client connects: hop 1's forward listener."""
    hop1: Proxy
    hop2: Proxy
    admin2: SockAddr
    policy2: Path


@asynccontextmanager
async def proxy(
    tmp_path: Path, name: str, identity: IdentityDir, policy: str, forward: Forward
) -> AsyncIterator[tuple[Proxy, SockAddr]]:
    policy_file = tmp_path / f"{name}.yaml"
    policy_file.write_text(policy)
    settings = dataclasses.replace(_settings(policy_file), identity_dir=str(identity.path), forwards=(forward,))
    running = Proxy(settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        admin = await nursery.start(running.serve, shutdown)
        yield running, admin
        shutdown.set()


def published_identities(tmp_path: Path, pki: Pki) -> tuple[IdentityDir, IdentityDir]:
    """The client proxy's (FRONTEND) and the server proxy's (BACKEND) SVID directories, published."""
    client_id = IdentityDir(pki, tmp_path / "client", FRONTEND)
    server_id = IdentityDir(pki, tmp_path / "server", BACKEND)
    client_id.publish()
    server_id.publish()
    return client_id, server_id


@asynccontextmanager
async def two_hops(
    tmp_path: Path, pki: Pki, app: SockAddr, *, server_policy: str, expected: str = BACKEND, opaque: bool = False
) -> AsyncIterator[Hops]:
    client_id, server_id = published_identities(tmp_path, pki)
    entry, middle = SockAddr("127.0.0.1", free_port()), SockAddr("127.0.0.1", free_port())
    client_policy = (
        f"outbound:\n  meshed:\n    - {{cidr: 127.0.0.1/32, ports: [{middle.port}], identity: '{expected}'}}\n"
    )
    if opaque:
        client_policy += f"  ports: [{{port: {middle.port}, protocol: opaque}}]\n"
    async with (
        proxy(tmp_path, "server", server_id, server_policy, Forward(middle, app, "inbound")) as (hop2, admin2),
        proxy(tmp_path, "client", client_id, client_policy, Forward(entry, middle)) as (hop1, _),
    ):
        yield Hops(entry, hop1, hop2, admin2, tmp_path / "server.yaml")


@asynccontextmanager
async def mesh(
    tmp_path: Path, pki: Pki, seen: App, *, server_policy: str, echo: bool = False, **options: object
) -> AsyncIterator[Hops]:
    """The application (recording into ``seen``) behind two hops."""
    async with (
        application(seen, echo=echo) as app,
        two_hops(tmp_path, pki, app, server_policy=server_policy, **options) as hops,  # type: ignore[arg-type]
    ):
        yield hops


def records(hop: Proxy) -> list[tuple[str, str | None, str | None]]:
    """(tls, peer id, close reason) of every connection the hop has seen."""
    return [(rec.tls, rec.peer_id, rec.close_reason) for rec in (*hop.table.live.values(), *hop.table.recent)]


def request(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".encode()


async def exchange(entry: SockAddr, data: bytes) -> bytes:
    """Send ``data`` and an EOF, read until the connection ends (b"" when closed or reset at once)."""
    stream = await trio.open_tcp_stream(entry.ip, entry.port)
    received = b""
    async with stream:
        try:
            await stream.send_all(data)
            await stream.send_eof()
            while chunk := await stream.receive_some():
                received += chunk
        except trio.BrokenResourceError:
            pass
    return received


@pytest.fixture
def pki() -> Pki:
    return real_pki()


async def test_http_crosses_two_hops_over_mtls_and_each_side_records_the_other(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app, server_policy=STRICT) as hops:
            status, _, body = await http(hops.entry, request("/hello"))
            assert (status, body) == (200, b"ok")
            assert b"GET /hello HTTP/1.1" in seen.received
            assert ("true", BACKEND, "completed") in records(hops.hop1)
            assert ("true", FRONTEND, "completed") in records(hops.hop2)
            _, metrics = await get(hops.admin2, "/metrics")
            assert f'client_id="{FRONTEND}"'.encode() in metrics and b'tls="true"' in metrics


async def test_http_authorization_answers_403_without_reaching_the_app(tmp_path: Path, pki: Pki) -> None:
    policy = STRICT + (
        "  authorization:\n"
        f"    - {{identities: ['{FRONTEND}'], paths: ['/public/*'], methods: [GET]}}\n"
        f"    - {{identities: ['{OTHER}']}}\n"
    )
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app, server_policy=policy) as hops:
            status, _, _ = await http(hops.entry, request("/public/page"))
            assert status == 200
            for denied in (request("/admin"), request("/public/page", "POST")):
                status, headers, _ = await http(hops.entry, denied)
                assert status == 403
                assert headers["x-triomesh-error"].startswith(f"authorization denied: {FRONTEND} may not")
            assert seen.received.count(b"HTTP/1.1\r\n") == 1  # only the allowed request reached the app
            _, metrics = await get(hops.admin2, "/metrics")
            text = metrics.decode()
            assert f'inbound_http_authz_allow_total{{client_id="{FRONTEND}"' in text
            [deny] = [line for line in text.splitlines() if line.startswith("inbound_http_authz_deny_total{")]
            assert deny.endswith(" 2.0")


async def test_tcp_authorization_closes_a_denied_connection_before_the_app(tmp_path: Path, pki: Pki) -> None:
    policy = STRICT + f"  authorization: [{{identities: ['{OTHER}']}}]\n"
    seen = App()
    with trio.fail_after(20):
        async with mesh(tmp_path, pki, seen, echo=True, server_policy=policy, opaque=True) as hops:
            assert await exchange(hops.entry, b"secret") == b""
            assert (seen.connections, seen.received) == (0, b"")
            assert ("true", FRONTEND, "authz_denied") in records(hops.hop2)
            _, metrics = await get(hops.admin2, "/metrics")
            assert f'inbound_tcp_authz_deny_total{{client_id="{FRONTEND}"'.encode() in metrics


async def test_opaque_tcp_crosses_two_hops(tmp_path: Path, pki: Pki) -> None:
    seen = App()
    with trio.fail_after(20):
        async with mesh(tmp_path, pki, seen, echo=True, server_policy=STRICT, opaque=True) as hops:
            assert await exchange(hops.entry, b"x" * 100_000) == b"x" * 100_000
            assert ("true", FRONTEND, "completed") in records(hops.hop2)


async def test_a_wrong_server_identity_gets_503_or_a_closed_connection_and_nothing_sent(
    tmp_path: Path, pki: Pki
) -> None:
    seen = App()
    with trio.fail_after(20):
        async with application(seen) as app, two_hops(tmp_path, pki, app, server_policy=STRICT, expected=OTHER) as hops:
            status, headers, _ = await http(hops.entry, request("/"))
            assert status == 503
            assert "peer_identity_mismatch" in headers["x-triomesh-error"]
            # Refused inside the handshake: hop 2 never saw a connected client, so it never connected to its app.
            assert (seen.connections, seen.received) == (0, b"")
    seen = App()
    with trio.fail_after(20):
        async with mesh(
            tmp_path / "tcp", pki, seen, echo=True, server_policy=STRICT, expected=OTHER, opaque=True
        ) as hops:
            assert await exchange(hops.entry, b"secret") == b""
            assert (seen.connections, seen.received) == (0, b"")
            assert any(reason == "peer_identity_mismatch" for _, _, reason in records(hops.hop1))


async def test_a_reload_that_revokes_an_identity_closes_its_connections_only(tmp_path: Path, pki: Pki) -> None:
    both = "inbound:\n  authorization: [{identities: ['*']}, {unauthenticated: true}]\n"
    plaintext_only = "inbound:\n  authorization: [{unauthenticated: true}]\n"
    seen = App()
    with trio.fail_after(20):
        async with mesh(tmp_path, pki, seen, echo=True, server_policy=both, opaque=True) as hops:
            meshed = await trio.open_tcp_stream(hops.entry.ip, hops.entry.port)
            middle = next(fwd.listen for fwd in hops.hop2.settings.forwards)
            plain = await trio.open_tcp_stream(middle.ip, middle.port)  # a plaintext client, permissive port
            for stream in (meshed, plain):
                await stream.send_all(b"ping")
                assert await stream.receive_some() == b"ping"
            generation = hops.hop2.store.current.generation
            hops.policy2.write_text(plaintext_only)
            await hops.hop2.store.wait_for_generation(generation)
            with pytest.raises(trio.BrokenResourceError):
                while await meshed.receive_some():
                    pass
                raise trio.BrokenResourceError  # an orderly close counts too: the point is that it ended
            await plain.send_all(b"still here")
            assert await plain.receive_some() == b"still here"
            assert ("true", FRONTEND, "policy_revoked") in records(hops.hop2)
            await meshed.aclose()
            await plain.aclose()
