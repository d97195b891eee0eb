"""Which ALPN name carries which inner protocol between proxies. Pure."""

from __future__ import annotations

from typing import Final

from dataplane.detect.sniff import Protocol
from dataplane.tls import alpn

INNER_PROTOCOL: Final = {
    alpn.H2: Protocol.H2,
    alpn.HTTP1_OVER_H2: Protocol.H2,  # framed as HTTP/2; the application gets HTTP/1.1 (``CARRIED_HTTP1``)
    alpn.HTTP1: Protocol.HTTP1,
    alpn.OPAQUE: Protocol.OPAQUE,
}
"""What an inbound proxy serves inside a mesh connection, by the ALPN name it selected."""

CARRIED_HTTP1: Final = "http1-h2"
"""The connection record's protocol of an inbound mesh connection whose HTTP/2 streams are HTTP/1.1 requests."""
CARRIAGE_OFFER: Final = (alpn.HTTP1_OVER_H2, alpn.HTTP1)
"""What an outbound proxy offers for the shared carriage: an older peer proxy picks plain HTTP/1.1."""


def alpn_for(protocol: Protocol) -> str:
    """The ALPN name an outbound proxy offers for what it detected (the application's own TLS travels opaque)."""
    if protocol is Protocol.H2:
        return alpn.H2
    if protocol is Protocol.HTTP1:
        return alpn.HTTP1
    return alpn.OPAQUE


def record_protocol(name: str | None) -> str:
    """The connection record's protocol for an inbound mesh connection that agreed on ALPN ``name``."""
    if name == alpn.HTTP1_OVER_H2:
        return CARRIED_HTTP1
    return INNER_PROTOCOL[name].value if name is not None else Protocol.OPAQUE.value
