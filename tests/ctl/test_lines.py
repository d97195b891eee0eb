from __future__ import annotations

import pytest
import trio
import trio.testing

from ctl.lab.lines import LineReader, LineTooLongError


async def test_lines_split_across_chunks_and_partial_last_line() -> None:
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive)
    await send.send_all(b"hel")
    await send.send_all(b"lo\r\nwor")
    await send.send_all(b"ld\nlast")
    await send.aclose()
    assert [await reader.readline() for _ in range(4)] == [b"hello", b"world", b"last", None]


async def test_overlong_line_is_refused() -> None:
    send, receive = trio.testing.memory_stream_pair()
    reader = LineReader(receive, max_line=8)
    await send.send_all(b"0123456789abcdef")
    with pytest.raises(LineTooLongError):
        await reader.readline()
