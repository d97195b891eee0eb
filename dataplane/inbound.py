"""Inbound: connections arriving for the pod, delivered to the application inside it.

In redirect mode (nat REDIRECT) the original destination comes from SO_ORIGINAL_DST and the application sees the
pod's own address as its peer. In tproxy mode (mangle TPROXY) the accepted socket's local address *is* the
original destination, and the proxy connects to the application from the client's own address (a transparent
bind), so the application sees the real client.
"""

from __future__ import annotations

from typing import Final

import trio

from dataplane.admin.schema import Direction
from dataplane.net.addr import SockAddr
from dataplane.net.sockopts import original_dst
from dataplane.settings import InboundMode
from policy.index import PortSettings
from policy.store import Snapshot


class InboundSide:
    direction: Final[Direction] = "inbound"
    intercepted: Final = True

    def __init__(self, mode: InboundMode) -> None:
        self._tproxy = mode == "tproxy"

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr:
        return local if self._tproxy else original_dst(stream.socket)

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings:
        return snapshot.index.inbound(dst.port)

    def source_ip(self, client: SockAddr) -> str | None:
        return client.ip if self._tproxy else None
