"""A hand-driven HTTP/2 peer: raw frames (hyperframe) and header blocks (hpack) on a real socket, for attacks and
for peers that behave in ways our own class never would."""

from __future__ import annotations

import hpack
import trio
from hyperframe.frame import Frame, HeadersFrame, SettingsFrame

from dataplane.http2.frames import PREFACE

Header = tuple[bytes, bytes]


class RawPeer:
    def __init__(self, stream: trio.SocketStream | None = None) -> None:
        """Without a stream it only builds frames (its hpack encoder keeps the dynamic table in order)."""
        self._stream = stream
        self._skip = 0  # the client's preface, when we are the server
        self.encoder = hpack.Encoder()
        self._buffer = bytearray()

    @property
    def stream(self) -> trio.SocketStream:
        assert self._stream is not None
        return self._stream

    async def start_client(self) -> None:
        await self.stream.send_all(PREFACE + SettingsFrame(0).serialize())

    async def start_server(self) -> None:
        self._skip = len(PREFACE)
        await self.stream.send_all(SettingsFrame(0).serialize())

    def headers(self, stream_id: int, headers: list[Header], *, end_stream: bool = True) -> bytes:
        flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
        return HeadersFrame(stream_id, self.encoder.encode(headers), flags=flags).serialize()

    async def send(self, *frames: Frame | bytes) -> None:
        await self.stream.send_all(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    async def next_frame(self) -> Frame | None:
        """The next frame from the peer; None at EOF or reset."""
        while True:
            if self._skip:
                skipped = min(self._skip, len(self._buffer))
                del self._buffer[:skipped]
                self._skip -= skipped
            if not self._skip and len(self._buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) >= 9 + length:
                    frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
                    del self._buffer[: 9 + length]
                    return frame
            try:
                chunk = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            if not chunk:
                return None
            self._buffer += chunk

    async def frames_until_close(self) -> list[Frame]:
        frames = []
        while (frame := await self.next_frame()) is not None:
            frames.append(frame)
        return frames
