"""A server-speaks-first TCP server (like SMTP or MySQL): a banner at once on accept, then an echo."""

from __future__ import annotations

import argparse
import functools

import trio

BANNER = b"220 banner.test ESMTP ready\r\n"


async def _session(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            await stream.send_all(BANNER)
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def serve(host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; ``started`` with the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(functools.partial(_session), listeners)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.apps.banner", description=__doc__)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=2525)
    args = p.parse_args()
    trio.run(serve, args.host, args.port)


if __name__ == "__main__":
    main()
