"""Refusing connections that would make the proxy talk to itself.

If the proxy's own upstream traffic is not exempt from interception (it runs under the wrong UID and its mark
is not exempt), every upstream connect is redirected straight back to the outbound listener, and the proxy
would recurse until it runs out of file descriptors. Two checks catch that on accept, before any connect:

- the client is one of our own upstream sockets: its address and original destination are the two ends of a
  connect we made (the full pair matters: the same local port is reused for other destinations, and a client on
  this host may well have it);
- the original destination is one of our own listeners (a client dialled the proxy port directly).
"""

from __future__ import annotations

import ipaddress

from dataplane.net.addr import SockAddr


class LoopGuard:
    __slots__ = ("_own_upstreams", "_proxy_ports")

    def __init__(self, proxy_ports: frozenset[int]) -> None:
        self._proxy_ports = proxy_ports
        self._own_upstreams: set[tuple[SockAddr, SockAddr]] = set()

    def add_upstream(self, local: SockAddr, remote: SockAddr) -> None:
        self._own_upstreams.add((local, remote))

    def discard_upstream(self, local: SockAddr, remote: SockAddr) -> None:
        self._own_upstreams.discard((local, remote))

    def check(
        self, client: SockAddr, original_dst: SockAddr, local: SockAddr, *, intercepted: bool = True
    ) -> str | None:
        """None when the connection may proceed, else the reason it is a loop. Only an intercepted connection can
        be one of our own upstreams come back."""
        if intercepted and (client, original_dst) in self._own_upstreams:
            return (
                f"connection from the proxy's own upstream socket {client}: the proxy's traffic is being "
                "intercepted again (run it as the --proxy-uid given to mesh-init, or with its --proxy-mark)"
            )
        if original_dst.port in self._proxy_ports and _is_self(original_dst, local):
            return f"original destination {original_dst} is the proxy's own listener"
        return None


def _is_self(original_dst: SockAddr, local: SockAddr) -> bool:
    ip = ipaddress.ip_address(original_dst.ip)
    return ip.is_loopback or ip.is_unspecified or original_dst.ip == local.ip
