"""Classifying the first bytes a client sends: HTTP/2 prior knowledge, HTTP/1.x, a TLS ClientHello, or opaque.

Pure: bytes in, a verdict out; no I/O. ``classify`` is called on a growing prefix of the client's stream and
answers ``NEED_MORE`` exactly while the prefix could still become one of the protocols we recognise, so the
caller decides on the first segment whenever that segment is enough (it nearly always is) and never waits for
bytes that cannot change the answer. Like Linkerd's detection (``linkerd/http/detect``), anything not recognised
is opaque: a false "opaque" only costs HTTP features, a false "HTTP" would break the connection.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 section 3.4, all 24 bytes
# The longest request line we wait for. Longer lines are legal HTTP, but a detector that waits for them can be
# made to buffer without limit; Linkerd reads one buffer (1 KiB) and calls the rest opaque.
MAX_REQUEST_LINE: Final = 8192
_VERSIONS: Final = (b"HTTP/1.1\r\n", b"HTTP/1.0\r\n")
_VERSION_LEN: Final = len(_VERSIONS[0])
# RFC 9110 section 5.6.2 tchar: the bytes a method token may hold.
_TCHAR: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TLS_HANDSHAKE: Final = 22  # TLS record content type
_TLS_CLIENT_HELLO: Final = 1  # handshake message type
_TLS_HEADER: Final = 6  # record header (5) + handshake type (1): all we need to recognise a ClientHello


class Protocol(enum.Enum):
    """What a connection was detected as; the values appear in /connections and ``meshctl conns``."""

    HTTP1 = "http1"
    H2 = "h2"
    TLS = "tls"
    OPAQUE = "opaque"


class Detected(msgspec.Struct, frozen=True):
    """A final verdict on a prefix: more bytes would not change it."""

    protocol: Protocol
    reason: str
    """Why, for the connection table and metrics: ``http/1``, ``http/2``, ``tls``, or why it is opaque."""


class NeedMore(msgspec.Struct, frozen=True):
    """The prefix is still a prefix of something we recognise: wait for more bytes (or give up)."""


NEED_MORE: Final = NeedMore()
HTTP1: Final = Detected(Protocol.HTTP1, "http/1")
H2: Final = Detected(Protocol.H2, "http/2")
TLS: Final = Detected(Protocol.TLS, "tls")
NOT_HTTP: Final = Detected(Protocol.OPAQUE, "not_http")


def classify(prefix: bytes, *, tls_only: bool = False) -> Detected | NeedMore:
    """The verdict on the first bytes of a client's stream. ``tls_only``: only a TLS ClientHello matters (an
    opaque port looked at for a mesh client): anything else is opaque from its first byte."""
    if not prefix:
        return NEED_MORE
    if prefix[0] == _TLS_HANDSHAKE:
        return _tls(prefix)
    if tls_only:
        return NOT_HTTP
    if prefix.startswith(H2_PREFACE):
        return H2
    if H2_PREFACE.startswith(prefix):
        return NEED_MORE
    return _http1(prefix)


def _tls(prefix: bytes) -> Detected | NeedMore:
    # Record: type 22, legacy version 3.x (3.1 in practice; SSL 3.0 is 3.0), 2-byte length, then the handshake
    # message, whose first byte is its type. A ClientHello's record is never empty.
    head = prefix[:_TLS_HEADER]
    if len(head) >= 2 and head[1] != 3:
        return NOT_HTTP
    if len(head) >= 3 and head[2] > 4:
        return NOT_HTTP
    if len(head) >= 5 and head[3] == 0 and head[4] == 0:
        return NOT_HTTP
    if len(head) < _TLS_HEADER:
        return NEED_MORE
    return TLS if head[5] == _TLS_CLIENT_HELLO else NOT_HTTP


def _http1(prefix: bytes) -> Detected | NeedMore:
    """``method SP target SP HTTP/1.x CRLF`` (RFC 9112 section 3), checked as far as the prefix goes; a complete
    first line that is malformed but ends in an HTTP/1 version is an attempt at HTTP too (``_malformed_http1``)."""
    verdict = _strict_http1(prefix)
    if verdict is NOT_HTTP and _malformed_http1(prefix):
        return HTTP1
    return verdict


def _malformed_http1(prefix: bytes) -> bool:
    # A bad method or target (a smuggling attempt such as "GET\x01 / HTTP/1.1") must meet the strict HTTP parser
    # and its 400, not be relayed to the application as opaque bytes. Only decided on a whole first line, so an
    # opaque protocol never waits for a line end.
    # The line may end at the first LF or, when a bare LF was smuggled into it, at the first CRLF.
    for terminator in (b"\n", b"\r\n"):
        end = prefix.find(terminator, 0, MAX_REQUEST_LINE)
        if end < 0:
            continue
        line = prefix[:end].removesuffix(b"\r")
        head, version = line[:-9], line[-9:]
        if version[1:] in (b"HTTP/1.1", b"HTTP/1.0") and version[:1] in b" \t" and (b" " in head or b"\t" in head):
            return True
    return False


def _strict_http1(prefix: bytes) -> Detected | NeedMore:
    line = prefix[:MAX_REQUEST_LINE]
    end = len(line)
    i = 0
    while i < end and line[i] in _TCHAR:
        i += 1
    if i == end:
        return _undecided(prefix)
    if i == 0 or line[i] != 0x20:
        return NOT_HTTP
    target = i + 1
    # The target is any run of visible ASCII (origin-, absolute-, authority- or asterisk-form).
    j = target
    while j < end and 0x21 <= line[j] <= 0x7E:
        j += 1
    if j == end:
        return _undecided(prefix)
    if j == target or line[j] != 0x20:
        return NOT_HTTP
    version = line[j + 1 : j + 1 + _VERSION_LEN]
    if any(known.startswith(version) for known in _VERSIONS):
        return HTTP1 if len(version) == _VERSION_LEN else _undecided(prefix)
    return NOT_HTTP


def _undecided(prefix: bytes) -> Detected | NeedMore:
    # Still a valid start of a request line: wait, unless the line is already as long as we are willing to wait.
    return NEED_MORE if len(prefix) < MAX_REQUEST_LINE else Detected(Protocol.OPAQUE, "line_too_long")


def is_h2_server_preface(data: bytes) -> bool:
    """Whether a server's first bytes are an HTTP/2 server connection preface: a SETTINGS frame (type 0x4) on
    stream 0. HTTP/2 servers send it as soon as a connection is accepted, before the client's preface arrives,
    so it must not count as a server-speaks-first protocol."""
    return len(data) >= 9 and data[3] == 0x04 and data[4] in (0x00, 0x01) and data[5:9] == b"\x00\x00\x00\x00"
