"""A WebSocket echo server and client on trio-websocket, for Upgrade through the proxy."""

from __future__ import annotations

import argparse

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    async with ws:
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:  # the client went away: end this connection quietly
                return
            await ws.send_message(message)


async def serve(host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``started`` with the bound port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, _echo, host, port, None)
        task_status.started(server.port)


async def echo_many(url: str, count: int, size: int = 64) -> int:
    """Send ``count`` messages of ``size`` bytes (text) and check each echo; returns how many came back right."""
    good = 0
    async with open_websocket_url(url) as ws:
        for i in range(count):
            message = f"{i:08d}".ljust(size, "x")
            await ws.send_message(message)
            if await ws.get_message() == message:
                good += 1
    return good


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.apps.ws_echo", description=__doc__)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--check", metavar="URL", help="echo --count messages through URL and exit (0: all came back)")
    p.add_argument("--count", type=int, default=10_000)
    args = p.parse_args()
    if args.check:
        good = trio.run(echo_many, args.check, args.count)
        print(f"{good}/{args.count}")
        raise SystemExit(0 if good == args.count else 1)
    trio.run(serve, args.host, args.port)


if __name__ == "__main__":
    main()
