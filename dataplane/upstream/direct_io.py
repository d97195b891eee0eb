"""Reading and writing non-blocking stdlib sockets under trio, without trio's socket wrappers.

Why: a request/response exchange is a handful of small reads and writes, and trio's ``SocketStream`` costs
several microseconds of Python around each system call (a checkpoint before, a context manager, a cancel-shielded
checkpoint after). Here a read or write is the system call itself; ``trio.lowlevel.wait_readable`` /
``wait_writable`` are used only when the socket would block (or when the caller knows it will).

Every read goes into one buffer shared by the whole process and is handed to ``feed`` at once, before anything
else can run: the parsers copy what they are given, so no connection holds a read buffer of its own.

Fairness: a task whose sockets are always ready would never reach a trio checkpoint, so every
``_CHECKPOINT_EVERY``-th operation that did not wait yields to the scheduler (and lets a cancellation in).

Error handling: a socket error (reset, broken pipe, closed) raises ``trio.BrokenResourceError`` from the
``OSError``, as ``trio.SocketStream`` does, so callers keep one vocabulary.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Final

import trio

READ_SIZE: Final = 65536  # one read at most: bounds what a parser buffers per read
_CHECKPOINT_EVERY: Final = 64  # operations that did not wait between two forced checkpoints

_buffer = bytearray(READ_SIZE)
_view = memoryview(_buffer)
_unchecked = 0


async def receive(sock: socket.socket, feed: Callable[[memoryview], object], *, wait_first: bool = False) -> int:
    """Read once from ``sock`` (waiting until it is readable) and pass the bytes to ``feed``; returns how many.

    0 means the peer closed (``feed`` got an empty view). ``wait_first``: the caller knows nothing can be there
    yet (a response to a request just sent), so skip the read that would only say EAGAIN.
    """
    if wait_first:
        await trio.lowlevel.wait_readable(sock)
    else:
        await _maybe_checkpoint()
    while True:
        try:
            n = sock.recv_into(_buffer)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(f"recv: {exc.strerror}") from exc
        feed(_view[:n])
        return n


async def send_all(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data``, waiting for room whenever the socket's buffer is full."""
    await _maybe_checkpoint()
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"send: {exc.strerror}") from exc
    if sent == len(data):
        return
    with memoryview(data) as view:
        while sent < len(view):
            await trio.lowlevel.wait_writable(sock)
            try:
                sent += sock.send(view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"send: {exc.strerror}") from exc


def close(sock: socket.socket) -> None:
    """Close ``sock``, first waking any task trio has waiting on it (as trio's own sockets do)."""
    if sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
    sock.close()


async def _maybe_checkpoint() -> None:
    global _unchecked  # noqa: PLW0603 - one counter for the process's single trio thread
    _unchecked += 1
    if _unchecked >= _CHECKPOINT_EVERY:
        _unchecked = 0
        await trio.lowlevel.checkpoint()
