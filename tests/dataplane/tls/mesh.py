"""Identities, contexts and connected TLSStream pairs for the dataplane.tls tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from dataplane.tls.alpn import MESH_PROTOCOLS
from dataplane.tls.handshake import tls_accept, tls_connect
from dataplane.tls.openssl import TLSContext, client_context, server_context
from dataplane.tls.stream import TLSStream
from identity.load import Identity, load_identity
from identity.spiffe import SpiffeId, parse_spiffe_id
from identity.verify import TrustBundle
from identity.x509 import Certificate, CertSpec, PrivateKey, build_certificate
from tests.identity.pki import FRONTEND, Pki

MESH = MESH_PROTOCOLS[:2]  # the HTTP names: h2 and http/1.1 inside the mesh


def real_pki(*, shift: timedelta = timedelta(0)) -> Pki:
    """A PKI on the machine's clock (OpenSSL checks validity against it), optionally shifted."""
    return Pki(now=datetime.now(UTC) + shift)


def identity_of(pki: Pki, directory: Path, spiffe_id: str, *, ttl: timedelta = timedelta(hours=1)) -> Identity:
    pki.identity_dir(directory, spiffe_id, ttl=ttl)
    return load_identity(directory, now=pki.now)


def unchecked_identity(pki: Pki, spec: CertSpec, *, claims: str = FRONTEND) -> Identity:
    """An Identity presenting a certificate load_identity would refuse (a bad shape, an expired leaf).

    It ``claims`` a valid ID, so it verifies its peers in that ID's trust domain like a real proxy would.
    """
    key = PrivateKey.generate()
    cert = build_certificate(spec, key, issuer=(pki.root.cert, pki.root.key))
    return _identity(cert, key, pki.bundle, parse_spiffe_id(claims))


def _identity(cert: Certificate, key: PrivateKey, bundle: TrustBundle, spiffe_id: SpiffeId) -> Identity:
    return Identity(
        spiffe_id=spiffe_id,
        not_before=cert.not_before,
        not_after=cert.not_after,
        serial=cert.serial,
        directory=Path("/nonexistent"),
        chain=(cert,),
        key=key,
        bundle=bundle,
        bundle_pem=b"".join(anchor.to_pem() for anchor in bundle.anchors),
    )


def contexts(
    server: Identity, client: Identity, *, server_alpn: Sequence[str] = MESH, client_alpn: Sequence[str] = MESH
) -> tuple[TLSContext, TLSContext]:
    return server_context(server, protocols=server_alpn), client_context(client, protocols=client_alpn)


async def handshake_pair(
    left: trio.abc.Stream,
    right: trio.abc.Stream,
    server: TLSContext,
    client: TLSContext,
    *,
    expected: SpiffeId | None = None,
) -> tuple[TLSStream, TLSStream]:
    """Handshake ``left`` as the client and ``right`` as the server, concurrently; (client, server) streams."""
    result: dict[str, TLSStream] = {}

    async def accept() -> None:
        result["server"] = await tls_accept(right, server)

    async def connect() -> None:
        result["client"] = await tls_connect(left, client, expected=expected)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        nursery.start_soon(connect)
    return result["client"], result["server"]


async def loopback_listener() -> tuple[trio.SocketListener, int]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    port = listener.socket.getsockname()[1]
    assert isinstance(port, int)
    return listener, port
