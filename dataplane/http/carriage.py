"""HTTP/1.1 messages as HTTP/2 header blocks and back, for the application's HTTP/1.1 carried between two proxies
over HTTP/2 (ALPN ``triomesh.http1-h2/1``). Pure.

Outbound, a parsed HTTP/1.1 request becomes a request block (``request_fields``) and the HTTP/2 response block
becomes an HTTP/1.1 head with its framing (``response_head``); inbound, the request block becomes an HTTP/1.1 head
for the application (``request_head``) and the application's response head becomes a response block
(``response_fields``). Both sides apply the usual forwarding rules (``dataplane.http.forwarding``): hop-by-hop
fields removed, ``x-forwarded-*`` set, ``x-request-id`` ensured. A Content-Length survives the crossing, so the
far side frames the body as the near side received it; a body without one is chunked again where HTTP/1.1 resumes.
"""

from __future__ import annotations

import http
from collections.abc import Sequence
from typing import Final

from dataplane.http.forwarding import ensure_request_id, forwarded_request_head, set_forwarded, strip_hop_by_hop
from dataplane.http.model import CHUNKED, NO_BODY, UNTIL_CLOSE, BodyKind, Framing, Headers, RequestHead, ResponseHead
from dataplane.http.request_id import RequestIds

Header = tuple[bytes, bytes]

_HOST: Final = b"host"
_CONTENT_LENGTH: Final = b"content-length"
_NO_BODY_STATUS: Final = frozenset({204, 304})
_ABSOLUTE_PREFIX: Final = b"http://"
_PHRASES: Final = {int(status): status.phrase.encode() for status in http.HTTPStatus}


class CarriageError(ValueError):
    """A message that cannot cross: a response block without a valid ``:status`` or Content-Length."""


def request_fields(
    head: RequestHead, framing: Framing, *, authority: bytes, client: bytes, ids: RequestIds
) -> list[Header]:
    """The request block for ``head``; ``authority``: the destination, for a request without Host (HTTP/1.0).

    An absolute-form target gives ``:authority`` and ``:path`` (RFC 9112 3.2.2: it overrides Host)."""
    target = head.target
    path = target
    host = head.headers.get(_HOST)
    if target[:7].lower() == _ABSOLUTE_PREFIX:
        rest = target[7:]
        slash = rest.find(b"/")
        host, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    headers = strip_hop_by_hop(head.headers)
    set_forwarded(headers, client=client, proto=b"http")
    ensure_request_id(headers, ids)
    out: list[Header] = [
        (b":method", head.method),
        (b":scheme", b"http"),
        (b":authority", host or authority),
        (b":path", path),
    ]
    for name, value in headers:
        lname = name.lower()
        if lname in (_HOST, _CONTENT_LENGTH):
            continue
        out.append((lname, value))
    if framing.kind is BodyKind.LENGTH:
        out.append((_CONTENT_LENGTH, b"%d" % framing.length))
    return out


def response_head(fields: Sequence[Header], *, method: bytes, version: bytes) -> tuple[ResponseHead, Framing]:
    """The HTTP/1.1 response for a response block, and its framing towards a client of HTTP ``version``:
    Content-Length kept, else chunked (until close for HTTP/1.0); none after HEAD, for 1xx, 204 and 304."""
    status = 0
    headers = Headers()
    length: int | None = None
    for name, value in fields:
        if name.startswith(b":"):
            if name == b":status":
                status = int(value) if value.isdigit() and len(value) == 3 else 0
            continue
        if name == _CONTENT_LENGTH:
            if not value.isdigit() or (length is not None and int(value) != length):
                raise CarriageError(f"invalid content-length {value!r} in the response")
            length = int(value)
        headers.add(name, value)
    if status < 100:
        raise CarriageError("the response has no valid :status")
    # No hop-by-hop field to strip: HTTP/2 has none (a block with one is malformed, refused on receipt).
    response = ResponseHead(status, _PHRASES.get(status, b""), b"HTTP/1.1", headers)
    if method == b"HEAD" or status < 200 or status in _NO_BODY_STATUS:
        return response, NO_BODY
    if length is not None:
        return response, Framing(BodyKind.LENGTH, length)
    return response, UNTIL_CLOSE if version == b"1.0" else CHUNKED


def request_head(
    fields: Sequence[Header], *, bodiless: bool, client: bytes, ids: RequestIds
) -> tuple[bytes, bytes, Framing]:
    """Inbound: the method, the HTTP/1.1 request head (canonical bytes) and the body's framing for a request block;
    ``bodiless``: the stream ended with its headers. Raises ValueError for fields HTTP/1.1 cannot carry."""
    method = path = authority = b""
    fields_out: list[Header] = [(_HOST, b"")]  # Host first, as HTTP/1.1 clients write it
    length: bytes | None = None
    for name, value in fields:
        if name.startswith(b":"):
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        if name == _HOST:
            authority = authority or value
            continue
        if name == _CONTENT_LENGTH:
            length = value
        fields_out.append((name, value))
    fields_out[0] = (_HOST, authority)
    if length is not None and length.isdigit():
        framing = Framing(BodyKind.LENGTH, int(length))
    else:
        framing = NO_BODY if bodiless else CHUNKED
    head = RequestHead(method, path, b"1.1", Headers(fields_out))
    return method, forwarded_request_head(head, framing, upgrade=None, client=client, proto=b"http", ids=ids), framing


def response_fields(head: ResponseHead, framing: Framing) -> list[Header]:
    """Inbound: the response block for the application's response head (Content-Length kept, hop-by-hop gone)."""
    out: list[Header] = [(b":status", b"%d" % head.status)]
    length: bytes | None = None
    for name, value in strip_hop_by_hop(head.headers):
        lname = name.lower()
        if lname == _CONTENT_LENGTH:
            length = length or value
            continue
        out.append((lname, value))
    if framing.kind is BodyKind.LENGTH:
        out.append((_CONTENT_LENGTH, b"%d" % framing.length))
    elif framing.kind is BodyKind.NONE and length is not None:
        out.append((_CONTENT_LENGTH, length))  # HEAD and 304: the length a GET would have had
    return out


def trailer_fields(trailers: Headers) -> list[Header]:
    """Chunked trailers as an HTTP/2 trailer block (names lowercased, hop-by-hop fields gone)."""
    return [(name.lower(), value) for name, value in strip_hop_by_hop(trailers)]
