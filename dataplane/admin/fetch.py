"""Asking a worker's private admin endpoint (an abstract unix socket) for one path."""

from __future__ import annotations

import socket
from typing import Final

import trio

MAX_ANSWER: Final = 64 << 20  # bytes; a worker's /connections with thousands of connections is a few MiB


class FetchError(Exception):
    pass


async def fetch(name: str, path: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``path`` from the admin socket ``name``; returns (status, body). Raises FetchError."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.fail_after(timeout):
            await sock.connect("\0" + name)
            stream = trio.SocketStream(sock)
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: worker\r\n\r\n".encode("ascii"))
            data = bytearray()
            while chunk := await stream.receive_some(1 << 16):
                data += chunk
                if len(data) > MAX_ANSWER:
                    raise FetchError(f"{path}: answer larger than {MAX_ANSWER} bytes")
    except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        raise FetchError(f"{path}: {str(exc) or type(exc).__name__}") from None
    finally:
        sock.close()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        raise FetchError(f"{path}: malformed answer")
    return int(parts[1]), body
