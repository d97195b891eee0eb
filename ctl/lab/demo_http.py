"""The lab demo app's HTTP/1.1 side: a keep-alive server answering every request with one line of text that
shows what reached the application (method, path, and the fields the proxies set), so the demo can show it.

Deliberately minimal (the proxies in front of it are what is being shown): bodies with Content-Length are read
and discarded, anything it cannot read closes the connection.

For the service lab it also misbehaves on request, so tests can make one endpoint slow or failing:
``/delay?ms=N`` answers after N ms, ``/status?code=N`` answers with status N, and the control paths
``POST /_lab/fail?mode=off|reset|hang|NNN`` and ``POST /_lab/delay?ms=N`` set a fault (``app_faults``) that
applies to every later request on every connection (``GET /_lab/faults`` shows it). Control paths are always
answered, whatever the fault.
"""

from __future__ import annotations

import http
import socket
import struct
from typing import Final

import trio

from ctl.lab.app_faults import (
    CONTROL_PREFIX,
    FailMode,
    Faults,
    parse_delay_ms,
    parse_status,
    path_of,
    query_value,
)
from ctl.lab.lines import LineReader, LineTooLongError

IDLE_TIMEOUT: Final = 30.0  # seconds, as for the line protocol
MAX_FIELDS: Final = 100
SHOWN_FIELDS: Final = (b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto")
_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN

Reply = tuple[int, bytes]
"""(status, body) of one answer; None instead of a reply: the connection was reset or left hanging."""


def answer(name: str, method: bytes, target: bytes, fields: dict[bytes, bytes]) -> bytes:
    """The response body: one line naming the pod and the fields it saw."""
    seen = ", ".join(f"{key.decode()}={fields[key].decode('latin-1')}" for key in SHOWN_FIELDS if key in fields)
    return (
        f"{name} answers {method.decode('latin-1')} {target.decode('latin-1')} ({seen or 'no proxy fields'})\n".encode()
    )


async def handle_http(stream: trio.SocketStream, *, name: str, faults: Faults | None = None) -> None:
    """Resource handling: closes ``stream`` on return. Error handling: a broken client ends its session."""
    faults = Faults() if faults is None else faults
    async with stream:
        lines = LineReader(stream, max_line=8192)
        try:
            while True:
                with trio.move_on_after(IDLE_TIMEOUT):
                    request = await _read_head(lines)
                    if request is None:
                        return
                    method, target, fields = request
                    await _discard_body(lines, fields)
                    reply = await _respond(stream, name, faults, method, target, fields)
                    if reply is None:
                        return
                    status, body = reply
                    close = fields.get(b"connection", b"").lower() == b"close"
                    head = b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n" % (
                        status,
                        _phrase(status),
                        len(body),
                        b"connection: close\r\n" if close else b"",
                    )
                    await stream.send_all(head + body)
                    if close:
                        return
                    continue
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError, LineTooLongError, ValueError, EOFError):
            return


async def _respond(
    stream: trio.SocketStream, name: str, faults: Faults, method: bytes, target: bytes, fields: dict[bytes, bytes]
) -> Reply | None:
    text = target.decode("latin-1")
    path = path_of(text)
    if path.startswith(CONTROL_PREFIX):
        return _control(name, faults, method, path, text)
    if faults.delay_ms:
        await trio.sleep(faults.delay_ms / 1000)
    match faults.mode:
        case FailMode.RESET:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            return None
        case FailMode.HANG:
            await _until_closed(stream)
            return None
        case FailMode.STATUS:
            return faults.status, f"{name} fails with {faults.status} (lab fault)\n".encode()
        case FailMode.OFF:
            pass
    status = 200
    try:
        if path == "/delay":
            await trio.sleep(parse_delay_ms(query_value(text, "ms")) / 1000)
        elif path == "/status":
            status = parse_status(query_value(text, "code"))
    except ValueError as exc:
        return 400, f"{name}: {path}: {exc}\n".encode()
    return status, answer(name, method, target, fields)


def _control(name: str, faults: Faults, method: bytes, path: str, target: str) -> Reply:
    """The control paths; every change is answered with the fault now in force."""
    setters = {f"{CONTROL_PREFIX}fail": ("mode", faults.set_fail), f"{CONTROL_PREFIX}delay": ("ms", faults.set_delay)}
    if path == f"{CONTROL_PREFIX}faults" and method == b"GET":
        return 200, f"{name}: {faults.describe()}\n".encode()
    if path not in setters:
        return 404, f"{name}: no control path {path} (POST {', '.join(setters)}, GET {CONTROL_PREFIX}faults)\n".encode()
    if method != b"POST":
        return 405, f"{name}: {path} takes POST\n".encode()
    parameter, setter = setters[path]
    try:
        setter(query_value(target, parameter))
    except ValueError as exc:
        return 400, f"{name}: {path}: {exc}\n".encode()
    return 200, f"{name}: {faults.describe()}\n".encode()


async def _until_closed(stream: trio.SocketStream) -> None:
    """Holds the connection without answering until the client closes it (or the idle timeout ends it)."""
    while await stream.receive_some(4096):
        pass


def _phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Status"


async def _read_head(lines: LineReader) -> tuple[bytes, bytes, dict[bytes, bytes]] | None:
    first = await lines.readline()
    if not first:
        return None
    method, target, _version = first.split(b" ", 2)
    fields: dict[bytes, bytes] = {}
    while line := await lines.readline():
        if len(fields) >= MAX_FIELDS:
            raise ValueError("too many header fields")
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip()
    return method, target, fields


async def _discard_body(lines: LineReader, fields: dict[bytes, bytes]) -> None:
    length = int(fields.get(b"content-length", b"0"))
    if length:
        await lines.read_exactly(length)
