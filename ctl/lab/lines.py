"""Reading newline-terminated lines from a trio stream, with a bound on line length."""

from __future__ import annotations

from typing import Final

import trio

_CHUNK: Final = 4096


class LineTooLongError(Exception):
    pass


class LineReader:
    """Buffers what ``receive_some`` returns and hands it out a line at a time.

    Resource handling: does not own the stream; the caller closes it.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, *, max_line: int = 4096) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()

    async def readline(self) -> bytes | None:
        """The next line without its line ending; None at end of stream (a partial last line is returned)."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r")
            if len(self._buffer) > self._max_line:
                raise LineTooLongError(f"line longer than {self._max_line} bytes")
            chunk = await self._stream.receive_some(_CHUNK)
            if not chunk:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            self._buffer += chunk

    async def read_exactly(self, count: int) -> bytes:
        """``count`` bytes (after any lines read so far); EOFError if the stream ends first."""
        while len(self._buffer) < count:
            chunk = await self._stream.receive_some(max(_CHUNK, count - len(self._buffer)))
            if not chunk:
                raise EOFError(f"the stream ended {count - len(self._buffer)} bytes short")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data
