"""Decoding SO_ORIGINAL_DST answers (pure).

After a nat REDIRECT the accepted socket's local address is the proxy's own; netfilter keeps the address the
client dialled in conntrack and hands it back through getsockopt(SO_ORIGINAL_DST). The kernel fills a
``struct sockaddr_in`` (16 bytes) at SOL_IP, or a ``struct sockaddr_in6`` (28 bytes) at SOL_IPV6 for
ip6tables (IP6T_SO_ORIGINAL_DST has the same number, 80). Python's socket module has neither constant.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

from dataplane.net.addr import SockAddr

SO_ORIGINAL_DST: Final = 80  # linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST in linux/netfilter_ipv6/ip6_tables.h
SOL_IP: Final = 0
SOL_IPV6: Final = 41
SOCKADDR_IN_LEN: Final = 16
SOCKADDR_IN6_LEN: Final = 28
_AF_INET: Final = 2
_AF_INET6: Final = 10


def decode_sockaddr_in(raw: bytes) -> SockAddr:
    """Decode a ``struct sockaddr_in``: family (host order), port (network order), 4-byte address."""
    if len(raw) < 8:
        raise ValueError(f"sockaddr_in too short: {len(raw)} bytes")
    (family,) = struct.unpack_from("=H", raw, 0)
    (port,) = struct.unpack_from("!H", raw, 2)
    addr = raw[4:8]
    if family != _AF_INET:
        raise ValueError(f"expected AF_INET in sockaddr_in, got family {family}")
    return SockAddr(str(ipaddress.IPv4Address(addr)), port)


def decode_sockaddr_in6(raw: bytes) -> SockAddr:
    """Decode a ``struct sockaddr_in6``: family, port, flowinfo, 16-byte address, scope id."""
    if len(raw) < 24:
        raise ValueError(f"sockaddr_in6 too short: {len(raw)} bytes")
    (family,) = struct.unpack_from("=H", raw, 0)
    (port,) = struct.unpack_from("!H", raw, 2)
    addr = raw[8:24]
    if family != _AF_INET6:
        raise ValueError(f"expected AF_INET6 in sockaddr_in6, got family {family}")
    return SockAddr(str(ipaddress.IPv6Address(addr)), port)
