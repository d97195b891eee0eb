"""Where a message body ends (RFC 9112 section 6), decided once from the head (pure).

Stricter than the RFC where the RFC allows two readings: Transfer-Encoding together with Content-Length is
refused (RFC 9112 section 6.1 lets a server refuse it; it is the CL.TE / TE.CL smuggling pair), a coding list
must end in exactly one ``chunked``, and Content-Length must be plain decimal digits, the same in every field.
"""

from __future__ import annotations

import re
from typing import Final

from dataplane.http.model import CHUNKED, NO_BODY, UNTIL_CLOSE, BodyKind, Framing
from dataplane.http.tokens import is_token
from dataplane.http1.errors import Http1Error, Reason

_MAX_CONTENT_LENGTH: Final = 2**63 - 1
"""Longer than any real body; a value past it overflows signed 64-bit parsers downstream (http-garden)."""
_CHUNKED: Final = b"chunked"
_KNOWN_CODINGS: Final = frozenset({b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress", b"identity"})
"""The registered codings other than chunked (RFC 9110 8.4.1), and "identity" (withdrawn, harmless)."""
# What may follow a coding: parameters (RFC 9110 10.1.4), and the empty ones real clients send ("chunked;").
_PARAMETERS: Final = re.compile(
    rb"(?:[ \t]*;[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?)?)*[ \t]*"
)


def request_framing(method: bytes, version: bytes, lengths: list[bytes], codings: list[bytes]) -> Framing:
    """The framing of a request with these Content-Length and Transfer-Encoding field values.

    A request with neither has no body (requests are never read until close).
    """
    if codings:
        if lengths:
            raise Http1Error(Reason.TE_AND_CL, "both Transfer-Encoding and Content-Length")
        if version == b"1.0":
            # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            raise Http1Error(Reason.BAD_TRANSFER_ENCODING, "Transfer-Encoding in an HTTP/1.0 request")
        outer = _chunked_codings(codings, status=400)
        if method == b"CONNECT":
            raise Http1Error(Reason.BAD_TRANSFER_ENCODING, "CONNECT request with a body")
        return Framing(BodyKind.CHUNKED, codings=outer) if outer else CHUNKED
    if lengths:
        length = content_length(lengths, status=400)
        if method == b"CONNECT" and length:
            raise Http1Error(Reason.BAD_CONTENT_LENGTH, "CONNECT request with a body")
        return Framing(BodyKind.LENGTH, length)
    return NO_BODY


def response_framing(
    request_method: bytes, status: int, version: bytes, lengths: list[bytes], codings: list[bytes]
) -> Framing:
    """The framing of an upstream response to a ``request_method`` request. Every error here is a 502."""
    # Validated even where it is only metadata (HEAD, 304): the parser forwards it.
    length = content_length(lengths, status=502) if lengths else 0
    if codings:
        if lengths:
            raise Http1Error(Reason.TE_AND_CL, "both Transfer-Encoding and Content-Length", status=502)
        if version == b"1.0":
            raise Http1Error(Reason.BAD_TRANSFER_ENCODING, "Transfer-Encoding in an HTTP/1.0 response", status=502)
        outer = _chunked_codings(codings, status=502)
    no_body = (
        request_method == b"HEAD"
        or status < 200
        or status in (204, 304)
        or (request_method == b"CONNECT" and status < 300)
    )
    if no_body:
        if (status < 200 or status == 204) and (codings or length):
            # RFC 9110: MUST NOT send them; a "bodyless" 204 with a body is a response-splitting vector.
            raise Http1Error(Reason.BAD_CONTENT_LENGTH, f"a {status} response declares a body", status=502)
        return NO_BODY
    if codings:
        return Framing(BodyKind.CHUNKED, codings=outer) if outer else CHUNKED
    if lengths:
        return Framing(BodyKind.LENGTH, length)
    return UNTIL_CLOSE


def downstream_response_framing(upstream: Framing, client_version: bytes) -> Framing:
    """How to frame a response towards the client, given how the upstream framed it.

    An HTTP/1.0 client cannot read chunked: it gets the body until close. An HTTP/1.1 client gets an
    until-close body re-framed as chunked, so its connection can stay open.
    """
    if upstream.kind is BodyKind.CHUNKED and client_version == b"1.0":
        if upstream.codings:
            # Only a Transfer-Encoding header can carry gzip-under-chunked, and HTTP/1.0 has none.
            raise Http1Error(
                Reason.UNSUPPORTED_TRANSFER_CODING, "transfer-coded response for an HTTP/1.0 client", status=502
            )
        return UNTIL_CLOSE
    if upstream.kind is BodyKind.UNTIL_CLOSE and client_version != b"1.0":
        return CHUNKED
    return upstream


def content_length(values: list[bytes], *, status: int) -> int:
    """The one Content-Length of these field values (identical duplicates collapse; RFC 9112 section 6.3)."""
    first = values[0]
    for value in values:
        # bytes.isdigit is ASCII-only: no sign, no "_", no spaces, no "0x", unlike int().
        if not value.isdigit() or len(value) > 19:
            raise Http1Error(
                Reason.BAD_CONTENT_LENGTH, f"Content-Length {value[:32]!r} is not a decimal number", status=status
            )
        if value != first:
            raise Http1Error(Reason.BAD_CONTENT_LENGTH, "Content-Length fields disagree", status=status)
    length = int(first)
    if length > _MAX_CONTENT_LENGTH:
        raise Http1Error(Reason.BAD_CONTENT_LENGTH, "Content-Length beyond 2^63", status=status)
    return length


def _chunked_codings(values: list[bytes], *, status: int) -> bytes:
    """Check a Transfer-Encoding list; return the codings applied before the final ``chunked`` (b"" if none).

    The list must end in exactly one ``chunked`` (in a request RFC 9112 6.1 requires 400 otherwise; a response
    read until close instead is refused too); the codings before it must be registered ones, else 501.
    """
    codings: list[bytes] = []
    for value in values:
        for item in value.split(b","):
            coding, semicolon, parameters = item.strip(b" \t").partition(b";")
            coding = coding.rstrip(b" \t").lower()
            # Parameters are dropped: the forwarded header is written canonically, without them.
            if semicolon and _PARAMETERS.fullmatch(semicolon + parameters) is None:
                raise Http1Error(
                    Reason.BAD_TRANSFER_ENCODING, f"bad transfer coding parameters {item[:32]!r}", status=status
                )
            codings.append(coding)
    for coding in codings:
        if not is_token(coding):
            raise Http1Error(
                Reason.BAD_TRANSFER_ENCODING, f"transfer coding {coding[:32]!r} is not a token", status=status
            )
    if codings.count(_CHUNKED) > 1:
        raise Http1Error(Reason.BAD_TRANSFER_ENCODING, "chunked applied more than once", status=status)
    if codings[-1] != _CHUNKED:
        raise Http1Error(Reason.BAD_TRANSFER_ENCODING, "the final transfer coding is not chunked", status=status)
    for coding in codings[:-1]:
        if coding not in _KNOWN_CODINGS:
            raise Http1Error(
                Reason.UNSUPPORTED_TRANSFER_CODING,
                f"unknown transfer coding {coding[:32]!r}",
                status=501 if status == 400 else status,
            )
    return b", ".join(codings[:-1])
