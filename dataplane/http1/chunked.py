"""Incremental decoder of the chunked transfer coding (pure; RFC 9112 section 7.1).

Strict where parsers have disagreed (http-garden, reliability.md G1.5): the size is 1-16 hex digits and nothing
else (no ``0x``, sign, ``_`` or leading space), extensions follow the grammar and are bounded, every chunk's data
ends in CRLF, and trailer fields obey the same rules as header fields. Extensions are dropped: the proxy
re-frames the body canonically.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from dataplane.http.model import Headers
from dataplane.http1.errors import Http1Error, Reason
from dataplane.http1.head import check_line_ends, parse_fields
from dataplane.http1.limits import Limits

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_CHUNK_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_MAX_CHUNK: Final = 2**32 - 1
"""Larger chunk sizes are refused (reliability.md G1.5): no client needs them, overflowing parsers do."""
_NO_NOTED: Final = frozenset[bytes]()


class _State(enum.Enum):
    SIZE = "size"
    DATA = "data"
    DATA_END = "data_end"
    TRAILERS = "trailers"
    DONE = "done"


class ChunkedDecoder:
    """Feed the body bytes with ``decode``; it returns data as it becomes available and consumes what it used.

    Resource handling: holds no buffer of its own; the caller's buffer is consumed in place, so memory stays
    bounded by what the caller reads.
    """

    __slots__ = ("_limits", "_remaining", "_scanned", "_state", "trailers")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._state = _State.SIZE
        self._remaining = 0
        self._scanned = 0
        self.trailers = Headers()

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def decode(self, buf: bytearray) -> bytes | None:
        """The next piece of body data from the front of ``buf`` (consumed), b"" at the end, None for more input.

        Raises Http1Error (``bad_chunk``, ``bad_header``, ``headers_too_large``) on a malformed body.
        """
        while True:
            state = self._state
            if state is _State.DATA:
                if not buf:
                    return None
                n = min(self._remaining, len(buf))
                data = bytes(buf[:n])
                del buf[:n]
                self._remaining -= n
                if not self._remaining:
                    self._state = _State.DATA_END
                return data
            if state is _State.SIZE:
                if not self._size_line(buf):
                    return None
            elif state is _State.DATA_END:
                if len(buf) < 2:
                    return None
                if buf[:2] != b"\r\n":
                    raise Http1Error(Reason.BAD_CHUNK, "chunk data not followed by CRLF (longer than its size?)")
                del buf[:2]
                self._state = _State.SIZE
            elif state is _State.TRAILERS:
                if not self._trailer_section(buf):
                    return None
                self._state = _State.DONE
                return b""
            else:
                return b""

    def _size_line(self, buf: bytearray) -> bool:
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > self._limits.max_chunk_line:
                raise Http1Error(Reason.BAD_CHUNK, f"chunk-size line longer than {self._limits.max_chunk_line}")
            if b"\n" in buf:
                raise Http1Error(Reason.BAD_CHUNK, "chunk-size line ends in a bare LF")
            return False
        if end > self._limits.max_chunk_line:
            raise Http1Error(Reason.BAD_CHUNK, f"chunk-size line longer than {self._limits.max_chunk_line}")
        m = _CHUNK_LINE.fullmatch(buf, 0, end)
        if m is None:
            raise Http1Error(Reason.BAD_CHUNK, f"malformed chunk-size line {bytes(buf[: min(end, 40)])!r}")
        size = int(m.group(1), 16)
        if size > _MAX_CHUNK:
            raise Http1Error(Reason.BAD_CHUNK, "chunk larger than 4 GiB")
        del buf[: end + 2]
        if size:
            self._remaining = size
            self._state = _State.DATA
        else:
            self._state = _State.TRAILERS
        return True

    def _trailer_section(self, buf: bytearray) -> bool:
        if buf[:2] == b"\r\n":
            del buf[:2]
            return True
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        limit = self._limits.max_head_bytes
        self._scanned = check_line_ends(buf, self._scanned, len(buf) if end < 0 else end + 4)
        if end < 0:
            if len(buf) > limit:
                raise Http1Error(Reason.HEADERS_TOO_LARGE, f"trailer section larger than {limit} bytes", status=431)
            return False
        if end > limit:
            raise Http1Error(Reason.HEADERS_TOO_LARGE, f"trailer section larger than {limit} bytes", status=431)
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        fields, _ = parse_fields(lines, 0, self._limits, _NO_NOTED)
        self.trailers = Headers(fields)
        return True
