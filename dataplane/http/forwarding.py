"""Header rewrites a proxy owes every forwarded message (pure): hop-by-hop removal, X-Forwarded-*, X-Request-Id."""

from __future__ import annotations

from typing import Final

from dataplane.http.model import Headers
from dataplane.http.request_id import RequestIds

HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
"""Fields that describe one connection, not the message (RFC 9110 section 7.6.1; Proxy-Connection is legacy).
Transfer-Encoding goes too: the serialiser writes the framing header itself."""

# `Connection: host` (or a framing field) must not let a client strip what the upstream needs to read the
# message the way we did: the classic hop-by-hop abuse.
_NEVER_NOMINATED: Final = frozenset({b"host", b"content-length"})


def strip_hop_by_hop(headers: Headers, *, upgrade: bytes | None = None) -> Headers:
    """A copy of ``headers`` without hop-by-hop fields and without the fields named in ``Connection``.

    ``upgrade`` (the protocol being switched to, e.g. ``b"websocket"``) keeps ``Upgrade`` and re-emits a single
    ``Connection: upgrade``: the upgrade handshake has to reach the other side. Works for both directions.
    """
    drop = set(HOP_BY_HOP)
    drop.update(token for token in headers.tokens(b"connection") if token not in _NEVER_NOMINATED)
    if upgrade is not None:
        drop.discard(b"upgrade")
    out = Headers((n, v) for n, v in headers if n.lower() not in drop)
    if upgrade is not None:
        out.set(b"Upgrade", upgrade)
        out.add(b"Connection", b"upgrade")
    return out


def set_forwarded(headers: Headers, *, client: bytes, proto: bytes) -> None:
    """Set X-Forwarded-For and X-Forwarded-Proto to what the proxy saw, replacing any client-supplied value.

    Replacing, never appending: a client could otherwise choose the address the application trusts.
    """
    headers.set(b"x-forwarded-for", client)
    headers.set(b"x-forwarded-proto", proto)


def ensure_request_id(headers: Headers, ids: RequestIds) -> bytes:
    """The request's X-Request-Id, generated and added when absent (a present one is kept for tracing)."""
    existing = headers.get(b"x-request-id")
    if existing:
        return existing
    new = ids.next()
    headers.set(b"x-request-id", new)
    return new
