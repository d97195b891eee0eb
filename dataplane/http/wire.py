"""Canonical HTTP/1.1 serialisation of heads and chunked bodies (pure).

One form only: ``Name: value`` with one space after the colon, CRLF line ends, ``HTTP/1.1`` as the proxy's own
version, and exactly one framing header written from the ``Framing`` decision, never copied from the input.
Everything downstream of the proxy then sees one unambiguous message, whatever the client sent.
"""

from __future__ import annotations

import re
from typing import Final

from dataplane.http.model import BodyKind, Framing, Headers, RequestHead, ResponseHead
from dataplane.http.tokens import is_token

_CONTENT_LENGTH: Final = b"content-length"
_TRANSFER_ENCODING: Final = b"transfer-encoding"
_CHUNKED_LINE: Final = b"Transfer-Encoding: chunked"
_FRAMING_FIELDS: Final = frozenset({_CONTENT_LENGTH, _TRANSFER_ENCODING})

# Request-line pieces re-checked here because heads may come from HTTP/2, whose library accepts a space in
# :path or :method (reliability.md A7): written out as HTTP/1.1 that would be request-line injection.
_TARGET: Final = re.compile(rb"[\x21-\x7e\x80-\xff]+")


def serialise_request_head(head: RequestHead, framing: Framing) -> bytes:
    """``head`` as canonical HTTP/1.1 bytes, ending with the blank line, framed by ``framing``.

    Raises ValueError if the method or target could not be parsed back as one request line, or any field would
    break the line structure (CR, LF or NUL anywhere).
    """
    lines = [request_line(head.method, head.target)]
    return _finish(lines, head.headers, framing)


def request_line(method: bytes, target: bytes) -> bytes:
    """``METHOD target HTTP/1.1`` (no CRLF); ValueError unless it reads back as exactly that request line."""
    if not is_token(method):
        raise ValueError(f"method {method!r} is not a token")
    if _TARGET.fullmatch(target) is None:
        raise ValueError(f"request target {target!r} contains a space or a control byte")
    return b"%s %s HTTP/1.1" % (method, target)


def serialise_response_head(head: ResponseHead, framing: Framing) -> bytes:
    """``head`` as canonical HTTP/1.1 bytes, ending with the blank line, framed by ``framing``."""
    if not 100 <= head.status <= 999:
        raise ValueError(f"status {head.status} is not three digits")
    lines = [b"HTTP/1.1 %d %s" % (head.status, head.reason)]
    return _finish(lines, head.headers, framing)


def _finish(lines: list[bytes], headers: Headers, framing: Framing) -> bytes:
    """Append the fields and the framing header; the framing field takes the place of the first received one.

    NONE framing keeps a received Content-Length: on a HEAD or 304 response it is metadata (the length a GET
    would have had), and the parser has already reduced it to one clean value.
    """
    kind = framing.kind
    if kind is BodyKind.LENGTH:
        framing_line: bytes | None = b"Content-Length: %d" % framing.length
    elif kind is BodyKind.CHUNKED:
        framing_line = b"Transfer-Encoding: %s, chunked" % framing.codings if framing.codings else _CHUNKED_LINE
    else:
        framing_line = None
    for name, value in headers:
        if not is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        lname = name.lower()
        if lname in _FRAMING_FIELDS:
            if kind is BodyKind.NONE and lname == _CONTENT_LENGTH:
                lines.append(name + b": " + value)
            elif framing_line is not None:
                lines.append(framing_line)
                framing_line = None
            continue
        lines.append(name + b": " + value)
    if framing_line is not None:
        lines.append(framing_line)
    lines.append(b"")
    lines.append(b"")
    out = b"\r\n".join(lines)
    check_line_structure(out, len(lines) - 1)
    return out


def check_line_structure(out: bytes, line_ends: int) -> None:
    """Refuse ``out`` unless it has exactly ``line_ends`` CRLFs, no other CR or LF, and no NUL."""
    # Counting in C is cheaper than validating every field again, and catches a CR, LF or NUL smuggled into a
    # name or value by any producer (the HTTP/1.1 parser already rejects them; an HTTP/2 peer may not).
    if out.count(b"\n") != line_ends or out.count(b"\r") != line_ends or b"\x00" in out:
        raise ValueError("a header field contains CR, LF or NUL: refusing to write it")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body. Empty data gives b"" (an empty chunk would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode_last_chunk(trailers: Headers | None = None) -> bytes:
    """The terminating zero chunk, with trailer fields if any (CR/LF/NUL-checked like head fields)."""
    if not trailers:
        return b"0\r\n\r\n"
    lines = [b"0"]
    for name, value in trailers:
        if not is_token(name):
            raise ValueError(f"trailer name {name!r} is not a token")
        lines.append(name + b": " + value)
    lines.append(b"")
    lines.append(b"")
    out = b"\r\n".join(lines)
    check_line_structure(out, len(lines) - 1)
    return out
