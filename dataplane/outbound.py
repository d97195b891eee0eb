"""Outbound: connections the pod's applications open, redirected to 127.0.0.1:15001 / [::1]:15001."""

from __future__ import annotations

from typing import Final

import trio

from dataplane.admin.schema import Direction
from dataplane.net.addr import SockAddr
from dataplane.net.sockopts import original_dst
from policy.index import PortSettings
from policy.store import Snapshot


class OutboundSide:
    direction: Final[Direction] = "outbound"
    intercepted: Final = True

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr:
        return original_dst(stream.socket)

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings:
        return snapshot.index.outbound(dst.ip, dst.port)

    def source_ip(self, client: SockAddr) -> str | None:
        return None
