"""Which ALPN name carries which inner protocol between proxies. Pure."""

from __future__ import annotations

from typing import Final

from dataplane.detect.sniff import Protocol
from dataplane.tls import alpn

INNER_PROTOCOL: Final = {alpn.H2: Protocol.H2, alpn.HTTP1: Protocol.HTTP1, alpn.OPAQUE: Protocol.OPAQUE}
"""What an inbound proxy serves inside a mesh connection, by the ALPN name it selected."""


def alpn_for(protocol: Protocol) -> str:
    """The ALPN name an outbound proxy offers for what it detected (the application's own TLS travels opaque)."""
    if protocol is Protocol.H2:
        return alpn.H2
    if protocol is Protocol.HTTP1:
        return alpn.HTTP1
    return alpn.OPAQUE
