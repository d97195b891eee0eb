"""Socket addresses as small immutable values (pure).

Everything above ``net`` talks in ``SockAddr``; the ``ip:port`` text form (``[ip]:port`` for IPv6) is what the
connection table, logs and the ``target_addr`` metric label show.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class SockAddr(NamedTuple):
    ip: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.ip

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.is_ipv6 else f"{self.ip}:{self.port}"

    @classmethod
    def from_sockname(cls, name: tuple[str, int] | tuple[str, int, int, int]) -> SockAddr:
        """From what getsockname()/getpeername()/accept() return, for AF_INET and AF_INET6."""
        return cls(name[0], name[1])

    @classmethod
    def parse(cls, text: str) -> SockAddr:
        """``1.2.3.4:80`` or ``[::1]:80``; raises ValueError with the reason."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"{text!r}: write IPv6 addresses in brackets, e.g. [::1]:15000")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
        return cls(str(ip), int(port_text))
