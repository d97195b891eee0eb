"""Message heads and header fields, as bytes (pure: no I/O).

Both codecs produce and consume these: the HTTP/1.1 parser fills them from the wire, the HTTP/2 side builds
them from pseudo-headers, and ``dataplane.http.wire`` writes them back as canonical HTTP/1.1.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec


class Headers:
    """Header fields in the order received. Names keep their case on the wire; every lookup ignores case.

    A list of ``(name, value)`` pairs, not a dict: order and repeated fields are meaningful (Set-Cookie) and a
    proxy forwards them as they came. Names passed to the lookup methods may be in any case.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._fields: list[tuple[bytes, bytes]] = list(fields)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes):
            return False
        lname = name.lower()
        return any(n.lower() == lname for n, _ in self._fields)

    def get(self, name: bytes) -> bytes | None:
        """The first value of ``name``, or None."""
        lname = name.lower()
        for n, v in self._fields:
            if n.lower() == lname:
                return v
        return None

    def get_all(self, name: bytes) -> list[bytes]:
        lname = name.lower()
        return [v for n, v in self._fields if n.lower() == lname]

    def add(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))

    def set(self, name: bytes, value: bytes) -> None:
        """Replace every ``name`` field by one, at the position of the first (appended if there was none)."""
        lname = name.lower()
        out: list[tuple[bytes, bytes]] = []
        placed = False
        for n, v in self._fields:
            if n.lower() != lname:
                out.append((n, v))
            elif not placed:
                out.append((name, value))
                placed = True
        if not placed:
            out.append((name, value))
        self._fields = out

    def remove(self, names: Iterable[bytes]) -> None:
        """Drop every field whose name is in ``names`` (compared case-insensitively)."""
        drop = {n.lower() for n in names}
        if drop:
            self._fields = [(n, v) for n, v in self._fields if n.lower() not in drop]

    def copy(self) -> Headers:
        return Headers(self._fields)

    def tokens(self, name: bytes) -> list[bytes]:
        """The comma-separated list elements of every ``name`` field, lower-cased, OWS-trimmed, empties dropped."""
        out: list[bytes] = []
        for value in self.get_all(name):
            for item in value.split(b","):
                token = item.strip(b" \t").lower()
                if token:
                    out.append(token)
        return out


class RequestHead(msgspec.Struct, frozen=True):
    """A request line and its header fields. ``version`` is ``b"1.1"`` or ``b"1.0"`` (``b"2"`` from HTTP/2)."""

    method: bytes
    target: bytes
    version: bytes
    headers: Headers


class ResponseHead(msgspec.Struct, frozen=True):
    """A status line and its header fields."""

    status: int
    reason: bytes
    version: bytes
    headers: Headers


class BodyKind(enum.Enum):
    NONE = "none"
    """No body at all (no framing header was sent, or the status/method has none)."""
    LENGTH = "length"
    """Exactly ``Framing.length`` bytes (Content-Length; 0 is an explicit empty body)."""
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until_close"
    """Responses only: the body ends when the connection closes."""


class Framing(msgspec.Struct, frozen=True):
    """How a message body is delimited on the wire (RFC 9112 section 6)."""

    kind: BodyKind
    length: int = 0
    codings: bytes = b""
    """CHUNKED only: transfer codings applied before chunked (``b"gzip"`` for ``gzip, chunked``). The proxy
    does not decode them; it passes them on in the framing header."""


NO_BODY: Final = Framing(BodyKind.NONE)
CHUNKED: Final = Framing(BodyKind.CHUNKED)
UNTIL_CLOSE: Final = Framing(BodyKind.UNTIL_CLOSE)
