"""Header rewrites a proxy owes every forwarded message (pure): hop-by-hop removal, X-Forwarded-*, X-Request-Id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from dataplane.http.model import BodyKind, Framing, Headers, RequestHead
from dataplane.http.request_id import RequestIds
from dataplane.http.tokens import TCHAR
from dataplane.http.wire import check_line_structure, request_line, serialise_request_head

HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
"""Fields that describe one connection, not the message (RFC 9110 section 7.6.1; Proxy-Connection is legacy).
Transfer-Encoding goes too: the serialiser writes the framing header itself."""

# `Connection: host` (or a framing field) must not let a client strip what the upstream needs to read the
# message the way we did: the classic hop-by-hop abuse.
_NEVER_NOMINATED: Final = frozenset({b"host", b"content-length"})
_CONNECTION: Final = b"connection"
_UPGRADE: Final = b"upgrade"
_CONTENT_LENGTH: Final = b"content-length"
_XFF: Final = b"x-forwarded-for"
_XFP: Final = b"x-forwarded-proto"
_REQUEST_ID: Final = b"x-request-id"
# Names the one-pass writers act on besides dropping: anything else is copied as it is.
_REQUEST_SPECIAL: Final = frozenset({_CONTENT_LENGTH, _XFF, _XFP, _REQUEST_ID, _UPGRADE})


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


def forwarded_request_head(  # noqa: PLR0912, PLR0915 - one pass over the fields is the point
    head: RequestHead,
    framing: Framing,
    *,
    upgrade: bytes | None,
    client: bytes,
    proto: bytes,
    ids: RequestIds,
) -> bytes:
    """The request head as forwarded, in one pass over its fields.

    Exactly the bytes of ``strip_hop_by_hop(upgrade=upgrade)``, ``set_forwarded``, ``ensure_request_id`` and
    ``serialise_request_head(framing)`` in a row (property-tested against them), for a fraction of the cost:
    each of those walks every field again. Raises ValueError where the serialiser would.
    """
    fields = list(head.headers)
    lnames = [name.lower() for name, _ in fields]
    drop = _drop_set(fields, lnames, upgrade)
    lines = [request_line(head.method, head.target)]
    framing_line = _framing_line(framing)
    keep_length = framing.kind is BodyKind.NONE
    xff = xfp = upgraded = False
    request_id: bool | None = None  # None: none seen yet; True: the first had a value, keep them all
    for (name, value), lname in zip(fields, lnames, strict=True):
        if lname in drop:
            continue
        if lname in _REQUEST_SPECIAL:
            if lname == _CONTENT_LENGTH:
                if keep_length:
                    lines.append(name + b": " + value)
                elif framing_line is not None:
                    lines.append(framing_line)
                    framing_line = None
                continue
            if lname == _XFF:
                if not xff:
                    lines.append(b"x-forwarded-for: " + client)
                    xff = True
                continue
            if lname == _XFP:
                if not xfp:
                    lines.append(b"x-forwarded-proto: " + proto)
                    xfp = True
                continue
            if lname == _UPGRADE:  # only kept when upgrading: one field, with the agreed protocol
                if not upgraded:
                    lines.append(b"Upgrade: " + (upgrade or b""))
                    upgraded = True
                continue
            if request_id is None:
                request_id = bool(value)
                if not request_id:
                    lines.append(b"x-request-id: " + ids.next())
                    continue
            if not request_id:
                continue
        lines.append(name + b": " + value)
    if upgrade is not None:
        if not upgraded:
            lines.append(b"Upgrade: " + upgrade)
        lines.append(b"Connection: upgrade")
    if not xff:
        lines.append(b"x-forwarded-for: " + client)
    if not xfp:
        lines.append(b"x-forwarded-proto: " + proto)
    if request_id is None:
        lines.append(b"x-request-id: " + ids.next())

    def slow() -> bytes:
        headers = strip_hop_by_hop(head.headers, upgrade=upgrade)
        set_forwarded(headers, client=client, proto=proto)
        ensure_request_id(headers, ids)
        return serialise_request_head(RequestHead(head.method, head.target, b"HTTP/1.1", headers), framing)

    return _finish(lines, framing_line, fields, slow)


def _drop_set(fields: list[tuple[bytes, bytes]], lnames: list[bytes], upgrade: bytes | None) -> frozenset[bytes]:
    """The names ``strip_hop_by_hop`` drops from these fields."""
    drop = HOP_BY_HOP
    if _CONNECTION in lnames:
        connection = Headers(field for field, lname in zip(fields, lnames, strict=True) if lname == _CONNECTION)
        drop = drop | (set(connection.tokens(_CONNECTION)) - _NEVER_NOMINATED)
    if upgrade is not None:
        drop = drop - {_UPGRADE}
    return drop


def _framing_line(framing: Framing) -> bytes | None:
    if framing.kind is BodyKind.LENGTH:
        return b"Content-Length: %d" % framing.length
    if framing.kind is BodyKind.CHUNKED:
        return b"Transfer-Encoding: %s, chunked" % framing.codings if framing.codings else b"Transfer-Encoding: chunked"
    return None


def _finish(
    lines: list[bytes], framing_line: bytes | None, fields: list[tuple[bytes, bytes]], slow: Callable[[], bytes]
) -> bytes:
    """Join the head; anything unusual (a name that is not a token, CR/LF/NUL in a field) goes the slow way,
    which gives the same bytes or raises the serialiser's own error."""
    if framing_line is not None:
        lines.append(framing_line)
    lines.append(b"")
    lines.append(b"")
    out = b"\r\n".join(lines)
    names = [name for name, _ in fields]
    if b"" in names or b"".join(names).translate(None, TCHAR):
        return slow()
    try:
        check_line_structure(out, len(lines) - 1)
    except ValueError:
        return slow()
    return out
