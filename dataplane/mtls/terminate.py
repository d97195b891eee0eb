"""Inbound: terminate a mesh proxy's mTLS on the client connection.

Called once the client's first bytes are known to be a mesh ClientHello (an ALPN name of the mesh's family). The
proxy presents its server SVID, requires and verifies the client's (``dataplane.tls``) and learns the inner
protocol from ALPN; the returned stream is the plaintext side (``dataplane.tls.bridge``), which the protocol
handlers serve as if the client had connected in plaintext.

Errors: ``NoIdentityError`` without a valid identity, a ``TLSHandshakeError`` subclass (its reason: version,
no client certificate, unknown CA, expired, bad SVID, ALPN, ...), ``ConnectTimeoutError``-like timeout as
``TLSHandshakeError``. The client connection is closed on failure.
"""

from __future__ import annotations

import socket

import trio

from dataplane.detect.sniff import Protocol
from dataplane.mtls.inner import INNER_PROTOCOL, record_protocol
from dataplane.mtls.originate import mesh_credentials
from dataplane.runtime import Runtime


async def terminate(
    rt: Runtime, client: trio.SocketStream, *, timeout: float
) -> tuple[trio.SocketStream, str, Protocol, str]:
    """The plaintext side of the client's mesh TLS, the client's verified identity, the inner protocol and the
    connection record's protocol (``record_protocol``: ``http1-h2`` for HTTP/1.1 carried over HTTP/2)."""
    credentials, bridges = mesh_credentials(rt, "a mesh client connected")
    from dataplane.tls.errors import TLSHandshakeError
    from dataplane.tls.handshake import tls_accept

    # The bridge owns the client's socket from here: detached from the accepted stream, which trio's
    # serve_listeners closes as soon as the handler returns.
    transport = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=client.socket.detach())))
    try:
        with trio.fail_after(timeout):
            tls = await tls_accept(transport, credentials.server)
    except trio.TooSlowError:
        await trio.aclose_forcefully(transport)
        raise TLSHandshakeError(f"the client's mesh TLS handshake took longer than {timeout:g}s") from None
    protocol = INNER_PROTOCOL[tls.alpn] if tls.alpn is not None else Protocol.OPAQUE
    peer = str(tls.peer)
    plain = bridges.open_bridge(tls)
    return trio.SocketStream(trio.socket.from_stdlib_socket(plain)), peer, protocol, record_protocol(tls.alpn)
