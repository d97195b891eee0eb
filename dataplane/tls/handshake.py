"""Opening mesh TLS over a connected stream: ``tls_accept`` (inbound) and ``tls_connect`` (outbound).

Each returns a ``TLSStream`` only after the handshake completed, the peer's SVID passed our verification and
ALPN agreed on one of our protocols; otherwise it raises a ``TLSHandshakeError`` subclass whose ``reason``
says why, and no application byte has been read from or written for the peer.

TLS 1.3 puts the client's certificate after the server's Finished, so a client learns that the server refused
its certificate only when it next reads (an alert: ``trio.BrokenResourceError`` from ``receive_some``).

Resource handling: on any failure the transport is closed before the error propagates; on success the
returned stream owns it. Neither function has a timeout: wrap the call in ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from dataplane.tls.errors import AlpnError, HandshakeEOFError
from dataplane.tls.openssl import PeerCheck, TLSContext, TLSEngine
from dataplane.tls.stream import TLSStream
from identity.spiffe import SpiffeId


async def tls_accept(transport: trio.abc.Stream, context: TLSContext) -> TLSStream:
    """Terminate a mesh client's TLS on ``transport`` with a server context; the client SVID is verified."""
    if not context.server_side:
        raise ValueError("tls_accept needs a server context")
    return await _handshake(TLSStream(transport, TLSEngine(context)))


async def tls_connect(
    transport: trio.abc.Stream,
    context: TLSContext,
    *,
    expected: SpiffeId | None = None,
    offer: str | Sequence[str] | None = None,
    accept: PeerCheck | None = None,
) -> TLSStream:
    """Originate mesh TLS on ``transport``; the server must present a valid SVID (``expected`` when given).

    ``offer``: the ALPN protocol to offer (the inner protocol), or several in order of preference (the server
    picks; ``TLSStream.alpn`` says which); None offers all of the context's. ``accept``:
    a further check of the server's identity, made inside the handshake, so a refused server never sees our
    Finished (it cannot take us for a connected client)."""
    if context.server_side:
        raise ValueError("tls_connect needs a client context")
    engine = TLSEngine(context, expected=expected, offer=offer, accept=accept)
    return await _handshake(TLSStream(transport, engine))


async def _handshake(stream: TLSStream) -> TLSStream:
    try:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            raise HandshakeEOFError(f"the transport failed during the TLS handshake ({exc})") from exc
        if stream.alpn is None:
            ours = ", ".join(stream.protocols)
            if stream.server_side:
                raise AlpnError(f"the client offered no ALPN protocol we accept ({ours})")
            raise AlpnError(f"the server selected no ALPN protocol we offered ({ours})")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream
