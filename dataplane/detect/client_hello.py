"""Reading the server name (SNI) and ALPN protocols from a TLS ClientHello, without terminating TLS.

Pure: bytes in, a ``ClientHello`` or None out; no I/O and no exception for any input (malformed, truncated or
hostile bytes all give None). A ClientHello split over several TLS records is reassembled when all of them are
in the bytes given; the caller never waits for more than the first record (see ``first_record_end``).
Layout from RFC 8446 section 4.1.2 (TLS 1.3; TLS 1.2's ClientHello has the same shape), the server_name
extension from RFC 6066 section 3, ALPN from RFC 7301 section 3.1.
"""

from __future__ import annotations

from typing import Final

import msgspec

_RECORD_HEADER: Final = 5
_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
MAX_RECORD: Final = 16384 + 2048  # RFC 8446 5.2: a record's payload is at most 2^14 + 2048 bytes
_MAX_HELLO: Final = 65536  # a longer ClientHello is not worth reassembling: SNI stays unknown
_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16
_HOST_NAME: Final = 0
_MAX_HOST: Final = 253


class ClientHello(msgspec.Struct, frozen=True):
    sni: str | None
    """The server_name the client asked for (lower case), None when it sent none."""
    alpn: tuple[str, ...]
    """The application protocols the client offers, in its order (``h2``, ``http/1.1``, ...)."""


class _Malformed(Exception):
    """Internal: the bytes are not a well-formed ClientHello."""


def first_record_end(data: bytes) -> int | None:
    """How many bytes the first TLS record spans (header included), or None if it is not a handshake record."""
    if len(data) < _RECORD_HEADER or data[0] != _HANDSHAKE:
        return None
    length = int.from_bytes(data[3:5], "big")
    return _RECORD_HEADER + length if 0 < length <= MAX_RECORD else None


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The SNI and ALPN of the ClientHello at the start of ``data`` (TLS records), or None."""
    try:
        body = _handshake(data)
        return _hello(_Reader(body))
    except _Malformed:
        return None


def _handshake(data: bytes) -> bytes:
    """The ClientHello message body, reassembled from the handshake records at the start of ``data``."""
    message = b""
    pos = 0
    while True:
        end = first_record_end(data[pos : pos + _RECORD_HEADER])
        if end is None or data[pos + 1] != 3 or pos + end > len(data):
            raise _Malformed
        message += data[pos + _RECORD_HEADER : pos + end]
        pos += end
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise _Malformed
            length = int.from_bytes(message[1:4], "big")
            if length > _MAX_HELLO:
                raise _Malformed
            if len(message) >= 4 + length:
                return message[4 : 4 + length]


class _Reader:
    """A cursor over bytes whose every read is bounds-checked (a short read is a malformed hello)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _Malformed
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def take_all(self) -> bytes:
        return self.take(len(self._data) - self._pos)

    def vector(self, length_size: int) -> _Reader:
        return _Reader(self.take(self.number(length_size)))

    def at_end(self) -> bool:
        return self._pos == len(self._data)


def _hello(hello: _Reader) -> ClientHello:
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    if hello.at_end():
        return ClientHello(sni=None, alpn=())  # a TLS 1.0-era hello without extensions
    extensions = hello.vector(2)
    if not hello.at_end():
        raise _Malformed
    seen: set[int] = set()
    while not extensions.at_end():
        kind = extensions.number(2)
        payload = extensions.vector(2)
        if kind in seen:
            raise _Malformed  # RFC 8446 4.2: an extension appears at most once
        seen.add(kind)
        if kind == _EXT_SERVER_NAME:
            sni = _server_name(payload)
        elif kind == _EXT_ALPN:
            alpn = _alpn(payload)
    return ClientHello(sni=sni, alpn=alpn)


def _server_name(payload: _Reader) -> str | None:
    names = payload.vector(2)
    if not payload.at_end():
        raise _Malformed
    host: str | None = None
    while not names.at_end():
        name_type = names.number(1)
        name = names.vector(2).take_all()
        if name_type == _HOST_NAME and host is None:
            host = _host(name)
    return host


def _host(name: bytes) -> str:
    # RFC 6066: ASCII host name, no trailing dot, no IP literal checks needed to be safe to display.
    if not 0 < len(name) <= _MAX_HOST or not all(0x21 <= byte <= 0x7E for byte in name):
        raise _Malformed
    return name.decode("ascii").lower()


def _alpn(payload: _Reader) -> tuple[str, ...]:
    protocols = payload.vector(2)
    if not payload.at_end():
        raise _Malformed
    found: list[str] = []
    while not protocols.at_end():
        proto = protocols.vector(1).take_all()
        if not proto:
            raise _Malformed  # RFC 7301: empty protocol names are not allowed
        found.append(proto.decode("latin-1"))
    return tuple(found)
