"""The lab's demo application: a line-protocol TCP server, one per pod.

``python -m ctl.lab.demo_app --name a --port 8080 --http-port 8081``. On connect to ``--port`` it greets with
its pod name, its own address and the peer address it sees (under TPROXY that is the calling pod's address,
under REDIRECT the local proxy's), then answers each line with ``<name> echoes: <line>`` until the client closes:
a server-speaks-first protocol, which the proxies relay as opaque TCP. ``--http-port`` serves HTTP/1.1
(``demo_http``), which they proxy as HTTP, and which can be told to fail, slow down or hang (``app_faults``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from typing import Final

import trio

from ctl.lab.app_faults import Faults
from ctl.lab.demo_http import handle_http
from ctl.lab.lines import LineReader, LineTooLongError

IDLE_TIMEOUT: Final = 30.0  # seconds; a forgotten client must not hold a connection for the lab's lifetime
MAX_LINE: Final = 4096


def format_sockaddr(sockaddr: object) -> str:
    """``ip:port``, or ``[ip]:port`` for IPv6, as the admin documents write addresses."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = str(sockaddr[0]), int(sockaddr[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(sockaddr)


def greeting(name: str, local: str, peer: str) -> str:
    return f"hello from {name} ({local}); you are {peer}"


async def handle_client(stream: trio.SocketStream, *, name: str) -> None:
    """Resource handling: closes ``stream`` on return. Error handling: a broken client ends its session."""
    async with stream:
        local = format_sockaddr(stream.socket.getsockname())
        peer = format_sockaddr(stream.socket.getpeername())
        lines = LineReader(stream, max_line=MAX_LINE)
        try:
            await stream.send_all(f"{greeting(name, local, peer)}\n".encode())
            while True:
                with trio.move_on_after(IDLE_TIMEOUT):
                    line = await lines.readline()
                    if line is None:
                        return
                    reply = f"{name} echoes: {line.decode('utf-8', errors='replace')}\n"
                    await stream.send_all(reply.encode())
                    continue
                await stream.send_all(f"{name}: idle for {IDLE_TIMEOUT:g}s, closing\n".encode())
                return
        except (trio.BrokenResourceError, trio.ClosedResourceError, LineTooLongError):
            return


async def serve(
    name: str,
    port: int,
    http_port: int | None = None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listens on every address family the namespace has; started() with the bound addresses (the line
    protocol's, then HTTP's). With port 0 each family gets its own port, hence a list."""
    listeners = await trio.open_tcp_listeners(port)
    http_listeners = await trio.open_tcp_listeners(http_port) if http_port is not None else []
    task_status.started([format_sockaddr(listener.socket.getsockname()) for listener in listeners + http_listeners])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, partial(handle_client, name=name), listeners)
        if http_listeners:
            # One fault state for every HTTP connection: a control request on one changes them all.
            handler = partial(handle_http, name=name, faults=Faults())
            nursery.start_soon(trio.serve_listeners, handler, http_listeners)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctl.lab.demo_app", description="The lab demo app: greets and echoes lines."
    )
    parser.add_argument("--name", required=True, help="the pod name to greet with")
    parser.add_argument("--port", type=int, default=8080, help="TCP port to listen on (default 8080)")
    parser.add_argument("--http-port", type=int, default=None, help="TCP port to serve HTTP/1.1 on (default: none)")
    args = parser.parse_args(argv)
    for flag, value in (("--port", args.port), ("--http-port", args.http_port)):
        if value is not None and not 0 <= value <= 65535:
            parser.error(f"argument {flag}: {value} is not a TCP port (0-65535)")
    try:
        trio.run(serve, str(args.name), int(args.port), args.http_port)
    except OSError as exc:
        ports = f"{args.port}" if args.http_port is None else f"{args.port} or {args.http_port}"
        print(f"demo_app: cannot listen on port {ports}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
