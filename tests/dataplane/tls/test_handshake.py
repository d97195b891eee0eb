"""Mesh TLS handshakes over real loopback sockets: both directions verified, and every refusal of G4.

Each refusal shows its reason and that the server application never got a byte: ``serve_one`` hands the
application a stream only after ``tls_accept`` returned, and records what it read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import trio

from dataplane.tls import errors
from dataplane.tls.handshake import tls_accept, tls_connect
from dataplane.tls.openssl import TLSContext, client_context, server_context
from dataplane.tls.stream import TLSStream
from identity.load import Identity
from identity.spiffe import parse_spiffe_id
from identity.verify import TrustBundle
from tests.dataplane.tls.mesh import MESH, identity_of, loopback_listener, real_pki, unchecked_identity
from tests.identity.pki import BACKEND, FRONTEND, Pki, leaf_spec
from tests.tools import need

pytestmark = pytest.mark.usefixtures("autoclose")


@dataclass
class Served:
    """What the server side saw: the handshake error, or the peer and the bytes the application read."""

    error: BaseException | None = None
    peer: str | None = None
    alpn: str | None = None
    peer_serial: int | None = None
    delivered: bytearray = field(default_factory=bytearray)


@pytest.fixture
def autoclose() -> None:
    return None


@pytest.fixture(scope="module")
def pki() -> Pki:
    return real_pki()


@pytest.fixture(scope="module")
def backend(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return identity_of(pki, tmp_path_factory.mktemp("backend"), BACKEND)


@pytest.fixture(scope="module")
def frontend(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return identity_of(pki, tmp_path_factory.mktemp("frontend"), FRONTEND)


async def serve_one(
    listener: trio.SocketListener, context: TLSContext, served: Served, *, task_status: trio.TaskStatus[None]
) -> None:
    """Accept one connection, terminate TLS, then echo what the application reads (upper-cased)."""
    task_status.started()
    transport = await listener.accept()
    try:
        stream = await tls_accept(transport, context)
    except errors.TLSHandshakeError as exc:
        served.error = exc
        return
    served.peer, served.alpn, served.peer_serial = str(stream.peer), stream.alpn, stream.peer_certificate.serial
    async with stream:
        while data := await stream.receive_some():
            served.delivered.extend(data)
            await stream.send_all(data.upper())


async def run_client(
    port: int, context: TLSContext, *, expected: str | None = None, payload: bytes = b"hello"
) -> tuple[bytes | BaseException, str | None]:
    """Connect, send ``payload``, read the answer (or the error that reading raised)."""
    transport = await trio.open_tcp_stream("127.0.0.1", port)
    want = parse_spiffe_id(expected) if expected is not None else None
    stream = await tls_connect(transport, context, expected=want)
    async with stream:
        try:
            await stream.send_all(payload)
            await stream.send_eof()
            answer = bytearray()
            while data := await stream.receive_some():
                answer.extend(data)
        except trio.BrokenResourceError as exc:
            return exc, str(stream.peer)
        return bytes(answer), str(stream.peer)


async def exchange(
    server: TLSContext, client: TLSContext, *, expected: str | None = None
) -> tuple[Served, tuple[bytes | BaseException, str | None] | BaseException]:
    listener, port = await loopback_listener()
    served = Served()
    outcome: tuple[bytes | BaseException, str | None] | BaseException
    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(serve_one, listener, server, served)
            try:
                outcome = await run_client(port, client, expected=expected)
            except errors.TLSHandshakeError as exc:
                outcome = exc
    return served, outcome


async def test_mutual_tls_both_ways_with_svids(backend: Identity, frontend: Identity) -> None:
    served, outcome = await exchange(
        server_context(backend, protocols=MESH), client_context(frontend, protocols=MESH), expected=BACKEND
    )
    assert served.error is None
    assert served.peer == FRONTEND
    assert served.alpn == MESH[0]
    assert outcome == (b"HELLO", BACKEND)
    assert served.peer_serial == frontend.serial
    assert served.delivered == b"hello"


async def test_the_server_picks_its_preferred_protocol_the_client_offers(backend: Identity, frontend: Identity) -> None:
    served, outcome = await exchange(
        server_context(backend, protocols=("h2", "http/1.1")),
        client_context(frontend, protocols=("http/1.1",)),
    )
    assert served.alpn == "http/1.1"
    assert isinstance(outcome, tuple)


async def test_another_ca_is_refused_and_nothing_is_delivered(backend: Identity, pki: Pki, tmp_path: Path) -> None:
    # The stranger trusts our CA (so it accepts the server), but its own certificate is from another CA.
    stranger = identity_of(real_pki(), tmp_path / "stranger", FRONTEND)
    stranger = dataclasses.replace(stranger, bundle=TrustBundle((*stranger.bundle.anchors, pki.root.cert)))
    served, outcome = await exchange(server_context(backend, protocols=MESH), client_context(stranger, protocols=MESH))
    assert isinstance(served.error, errors.UnknownCAError), served.error
    assert served.error.reason == "unknown_ca"
    assert served.delivered == b""
    # TLS 1.3: the client finished first and learns of the refusal when it reads: the server's alert, or a
    # reset when the server closed with the client's request still unread.
    assert isinstance(outcome, tuple)
    assert isinstance(outcome[0], trio.BrokenResourceError)


async def test_a_server_from_another_ca_is_refused_by_the_client(frontend: Identity, tmp_path: Path) -> None:
    stranger = identity_of(real_pki(), tmp_path / "stranger", BACKEND)
    served, outcome = await exchange(server_context(stranger, protocols=MESH), client_context(frontend, protocols=MESH))
    assert isinstance(outcome, errors.UnknownCAError), outcome
    assert isinstance(served.error, errors.TLSAlertError), served.error
    assert served.delivered == b""


@pytest.mark.parametrize(
    ("shift", "refusal"),
    [(-timedelta(days=3), errors.ExpiredCertError), (timedelta(days=3), errors.NotYetValidCertError)],
)
async def test_expired_and_not_yet_valid_client_certs(
    backend: Identity, pki: Pki, tmp_path: Path, shift: timedelta, refusal: type[errors.PeerRejectedError]
) -> None:
    # Same CA, but the leaf's window is days away from the machine's clock.
    spec = leaf_spec(FRONTEND, now=pki.now + shift)
    client = unchecked_identity(pki, spec)
    served, _ = await exchange(server_context(backend, protocols=MESH), client_context(client, protocols=MESH))
    assert isinstance(served.error, refusal), served.error
    assert served.delivered == b""


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"uris": (FRONTEND, BACKEND)}, "2 URI SANs"),
        ({"ca": True, "key_usage": frozenset({"digitalSignature", "keyCertSign"})}, "is a CA"),
        ({"uris": ("spiffe://other.org/ns/default/sa/frontend",)}, "not in trust domain"),
        ({"uris": ("spiffe://example.org",)}, "has no path"),
    ],
)
async def test_bad_svid_shapes_that_openssl_accepts_are_refused_by_our_check(
    backend: Identity, pki: Pki, changes: dict[str, object], words: str
) -> None:
    client = unchecked_identity(pki, leaf_spec(now=pki.now, **changes))
    served, _ = await exchange(server_context(backend, protocols=MESH), client_context(client, protocols=MESH))
    assert isinstance(served.error, errors.BadSvidError), served.error
    assert words in str(served.error)
    assert served.delivered == b""


async def test_wrong_server_identity_is_refused_before_anything_is_sent(backend: Identity, frontend: Identity) -> None:
    served, outcome = await exchange(
        server_context(backend, protocols=MESH), client_context(frontend, protocols=MESH), expected=FRONTEND
    )
    assert isinstance(outcome, errors.PeerIdentityMismatchError), outcome
    assert outcome.reason == "peer_identity_mismatch"
    assert "expected spiffe://example.org/ns/default/sa/frontend" in str(outcome)
    assert served.error is not None
    assert served.delivered == b""


async def test_no_alpn_overlap_fails_both_sides_with_reason_alpn(backend: Identity, frontend: Identity) -> None:
    served, outcome = await exchange(
        server_context(backend, protocols=("h2",)), client_context(frontend, protocols=("bogus",))
    )
    assert isinstance(served.error, errors.AlpnError), served.error
    assert served.error.reason == "alpn"
    assert served.delivered == b""
    assert isinstance(outcome, errors.AlpnError), outcome


async def test_plaintext_is_not_tls(backend: Identity) -> None:
    listener, port = await loopback_listener()
    served = Served()
    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(serve_one, listener, server_context(backend, protocols=MESH), served)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            async with client:
                await client.send_all(b"GET / HTTP/1.1\r\nHost: backend\r\n\r\n")
                with pytest.raises(trio.BrokenResourceError):
                    while await client.receive_some():
                        pass
                    raise trio.BrokenResourceError  # a clean close is as good: nothing was served
    assert isinstance(served.error, errors.NotTLSError), served.error
    assert served.delivered == b""


async def test_a_client_that_leaves_mid_handshake_is_reported_as_such(backend: Identity) -> None:
    listener, port = await loopback_listener()
    served = Served()
    with trio.fail_after(10):
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(serve_one, listener, server_context(backend, protocols=MESH), served)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            async with client:
                await client.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03")  # a ClientHello's first bytes
    assert isinstance(served.error, errors.HandshakeEOFError), served.error
    assert served.error.reason == "tls_handshake_eof"


async def _s_client(port: int, *args: str) -> str:
    # -ign_eof: keep reading after stdin ends, so the server's post-handshake alert (TLS 1.3) is printed.
    command = [need("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", *args]
    done = await trio.run_process(command, stdin=b"", capture_stdout=True, capture_stderr=True, check=False)
    return (done.stdout + done.stderr).decode(errors="replace")


async def openssl_peer(
    context: TLSContext, *args: str, presenting: Identity | None = None, trusting: Identity | None = None
) -> tuple[Served, str]:
    """Serve one connection to ``openssl s_client ARGS`` (with our SVID files when ``presenting``)."""
    if presenting is not None:
        args = (*args, "-cert", str(presenting.cert_path), "-key", str(presenting.key_path))
    if trusting is not None:
        args = (*args, "-CAfile", str(trusting.bundle_path))
    listener, port = await loopback_listener()
    served = Served()
    with trio.fail_after(20):
        async with listener, trio.open_nursery() as nursery:
            await nursery.start(serve_one, listener, context, served)
            output = await _s_client(port, *args)
    return served, output


async def test_a_tls12_client_is_refused(backend: Identity, frontend: Identity) -> None:
    server = server_context(backend, protocols=MESH)
    served, output = await openssl_peer(server, "-ign_eof", "-tls1_2", presenting=frontend)
    assert isinstance(served.error, errors.ProtocolVersionError), served.error
    assert "protocol version" in output
    assert served.delivered == b""


async def test_a_client_without_a_certificate_is_refused(backend: Identity) -> None:
    server = server_context(backend, protocols=MESH)
    served, output = await openssl_peer(server, "-ign_eof", "-tls1_3", trusting=backend)
    assert isinstance(served.error, errors.NoClientCertError), served.error
    assert "certificate required" in output
    assert served.delivered == b""


async def test_openssl_offering_an_unknown_alpn_is_refused(backend: Identity, frontend: Identity) -> None:
    server = server_context(backend, protocols=MESH)
    served, _ = await openssl_peer(server, "-ign_eof", "-tls1_3", "-alpn", "bogus", presenting=frontend)
    assert isinstance(served.error, errors.AlpnError), served.error
    assert served.delivered == b""


async def test_openssl_with_a_valid_svid_and_h2_is_served(backend: Identity, frontend: Identity) -> None:
    server = server_context(backend, protocols=MESH)
    served, output = await openssl_peer(server, "-tls1_3", "-alpn", MESH[0], presenting=frontend, trusting=backend)
    assert served.error is None, served.error
    assert served.peer == FRONTEND
    assert f"ALPN protocol: {MESH[0]}" in output
    assert "Verify return code: 0 (ok)" in output


async def test_a_rotated_identity_applies_to_new_handshakes_and_old_connections_continue(
    pki: Pki, frontend: Identity, tmp_path: Path
) -> None:
    """Rotation builds a new context; a connection keeps the context (and certificate) it started with."""
    directory = tmp_path / "backend"
    first = identity_of(pki, directory, BACKEND)
    client = client_context(frontend, protocols=MESH)
    listener, port = await loopback_listener()
    with trio.fail_after(10):
        async with listener:
            server = server_context(first, protocols=MESH)
            old_client, old_server = await _connect_pair(listener, port, server, client)
            second = identity_of(pki, directory, BACKEND)
            assert second.serial != first.serial
            new_client, new_server = await _connect_pair(listener, port, server_context(second, protocols=MESH), client)
            for client_side, server_side in ((old_client, old_server), (new_client, new_server)):
                await client_side.send_all(b"ping")
                assert await server_side.receive_some() == b"ping"
            assert old_client.peer_certificate.serial == first.serial
            assert new_client.peer_certificate.serial == second.serial
            for stream in (old_client, old_server, new_client, new_server):
                await stream.aclose()


async def _connect_pair(
    listener: trio.SocketListener, port: int, server: TLSContext, client: TLSContext
) -> tuple[TLSStream, TLSStream]:
    accepted: list[TLSStream] = []

    async def accept() -> None:
        accepted.append(await tls_accept(await listener.accept(), server))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        client_stream = await tls_connect(await trio.open_tcp_stream("127.0.0.1", port), client)
    return client_stream, accepted[0]
