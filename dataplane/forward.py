"""Static forward listeners (``--forward LISTEN=UPSTREAM``): a fixed upstream instead of an intercepted one.

Like Envoy's static listener + cluster: for ingress-style or non-transparent setups (and loopback benchmarks),
where no iptables rule rewrote the destination, so there is no SO_ORIGINAL_DST to ask. A ``--forward`` connection
is the pod's own traffic leaving through the proxy, so it is counted and governed as outbound to the upstream; an
``--inbound-forward`` one arrives for the pod (its upstream is the application) and is governed as inbound.
"""

from __future__ import annotations

from typing import Final

import trio

from dataplane.admin.schema import Direction
from dataplane.net.addr import SockAddr
from policy.index import PortSettings
from policy.store import Snapshot


class ForwardSide:
    # Clients dial a forward listener themselves: one may share a local port with one of our upstream sockets
    # (the kernel reuses ports across 4-tuples), which the own-upstream loop check would take for a loop.
    intercepted: Final = False

    def __init__(self, upstream: SockAddr, direction: Direction = "outbound") -> None:
        self.upstream = upstream
        self.direction: Final[Direction] = direction

    def original_dst(self, stream: trio.SocketStream, local: SockAddr) -> SockAddr:
        return self.upstream

    def port_settings(self, snapshot: Snapshot, dst: SockAddr) -> PortSettings:
        if self.direction == "inbound":
            return snapshot.index.inbound(dst.port)
        return snapshot.index.outbound(dst.ip, dst.port)

    def source_ip(self, client: SockAddr) -> str | None:
        return None
