"""Outbound: carry a connection to a meshed destination over mesh mTLS.

The TCP connection to the destination is already open (its original address: the peer's inbound proxy
intercepts it). Here the proxy's client SVID is presented, the server's SVID verified (``dataplane.tls``) and then
matched against the identity the policy expects there; only then does anything of the application's go out. The
result is a plain socket joined to the TLS stream (``dataplane.tls.bridge``), which every protocol path takes as
its upstream socket.

Errors: ``NoIdentityError`` without a valid identity, a ``TLSHandshakeError`` subclass for a failed handshake or
the wrong server identity (``peer_identity_mismatch``), ``ConnectTimeoutError`` for a handshake that takes longer
than the port's detect timeout (the connect timeout covers only the TCP handshake; a TLS handshake on a busy
core can take longer, and the inbound side gives the same time). All are ``ConnectError``s: the HTTP proxies
answer 503, an opaque connection is reset. On failure the TCP socket is closed.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from dataplane.admin.schema import Direction
from dataplane.errors import ConnectTimeoutError, NoIdentityError
from dataplane.net.addr import SockAddr
from dataplane.runtime import Runtime
from policy.index import MeshedTarget, PortSettings

if TYPE_CHECKING:
    from dataplane.svid.store import Credentials
    from dataplane.tls.bridge import BridgeEngine
    from identity.spiffe import SpiffeId
from policy.store import Snapshot


def meshed_target(
    direction: Direction, snapshot: Snapshot, dst: SockAddr, settings: PortSettings
) -> MeshedTarget | None:
    """How the policy says ``dst`` is reached over mesh mTLS; None when it is not (inbound, excluded, unlisted)."""
    if direction != "outbound" or settings.excluded:
        return None
    return snapshot.index.meshed(dst.ip, dst.port)


def mesh_credentials(rt: Runtime, needed_for: str) -> tuple[Credentials, BridgeEngine]:
    """The identity for a new mesh handshake and the engine its connection joins; ``NoIdentityError`` naming
    ``needed_for`` and why when the proxy has none (no --identity, not loaded, expired)."""
    credentials = rt.identity.current if rt.identity is not None else None
    if credentials is None or rt.bridges is None:
        why = rt.identity.problem() if rt.identity is not None else "mesh-proxy runs without --identity"
        raise NoIdentityError(f"{needed_for} but this proxy has no identity: {why}")
    return credentials, rt.bridges


async def originate(
    rt: Runtime, sock: socket.socket, dst: SockAddr, target: MeshedTarget, offer: str | Sequence[str], *, timeout: float
) -> tuple[socket.socket, str, str]:
    """Mesh TLS over the connected ``sock`` offering ALPN ``offer`` (one name, or several in order of
    preference): the bridge's plaintext socket, the server's verified identity and the name it chose."""
    try:
        credentials, bridges = mesh_credentials(rt, f"{dst} is meshed (outbound.meshed)")
    except NoIdentityError:
        sock.close()
        raise
    # Imported here: the TLS stack is loaded only by a proxy that has an identity.
    from dataplane.tls.handshake import tls_connect

    def accept(peer: SpiffeId) -> str | None:
        if target.expected.matches(str(peer)):
            return None
        return f"{dst} proved {peer}, but the policy expects {target.expected.pattern} there"

    transport = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    try:
        with trio.fail_after(timeout):
            tls = await tls_connect(transport, credentials.client, offer=offer, accept=accept)
    except trio.TooSlowError:
        await trio.aclose_forcefully(transport)
        raise ConnectTimeoutError(f"mesh TLS handshake with {dst} took longer than {timeout:g}s") from None
    peer = str(tls.peer)
    chosen = tls.alpn
    assert chosen is not None  # tls_connect refuses a handshake without an agreed name
    return bridges.open_bridge(tls), peer, chosen
