"""Clients that leave while their service request waits for its response: noticed by one task for the whole
proxy, not by a watcher per request.

Why: a request in flight holds a place in its service's queue and counts as load on its endpoint; a client that
closed while an endpoint hangs would hold both until the endpoint answers, if ever. Watching each client while
its response is awaited would cost a task (or a cancel scope with a deadline: about 20 us in trio) on every
request, most of which are answered in a millisecond. Instead a waiting HTTP/1.1 exchange registers its client
socket (two dict operations), and ``Departures.run`` looks, every ``PERIOD``, at those that have waited longer
than that: a client socket that reads as closed (or reset) cancels its connection (reason ``client_reset``),
which ends the request, frees its place and closes its upstream connection.
"""

from __future__ import annotations

import socket
from typing import Final, NoReturn

import trio

from dataplane.connections import ConnRecord

PERIOD: Final = 0.05
"""Seconds between looks; a client that left is noticed within about twice this."""
_PEEK: Final = int(socket.MSG_PEEK | socket.MSG_DONTWAIT)


class Departures:
    def __init__(self) -> None:
        self._waiting: dict[int, tuple[ConnRecord, socket.socket, float]] = {}

    def waiting(self, rec: ConnRecord, client: socket.socket) -> None:
        """``rec``'s request waits for its response from now (the client socket: ``client``)."""
        self._waiting[rec.id] = (rec, client, trio.current_time())

    def answered(self, rec: ConnRecord) -> None:
        self._waiting.pop(rec.id, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        task_status.started()
        while True:
            await trio.sleep(PERIOD)
            self.look(trio.current_time())

    def look(self, now: float) -> None:
        """Cancel the connections of clients that left while waiting longer than ``PERIOD``."""
        for conn_id, (rec, client, since) in list(self._waiting.items()):
            if now - since >= PERIOD and _gone(client):
                del self._waiting[conn_id]
                rec.cancel("client_reset")


def _gone(client: socket.socket) -> bool:
    try:
        return client.recv(1, _PEEK) == b""  # b"": the client's FIN; a byte: it sent more (pipelining)
    except BlockingIOError:
        return False
    except OSError:  # reset, or closed under us
        return True
