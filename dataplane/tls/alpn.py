"""ALPN between proxies: the inner protocol a mesh connection carries, chosen by the server, checked by both.

Pure. pyOpenSSL completes a handshake without ALPN when the server's select callback finds no overlap
(reliability.md A7), so the choice is made here and the proxy checks the outcome itself (``check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

# Mesh-only names (Istio's idea: "istio-h2", "istio-http/1.1"): an inbound proxy tells a peer proxy's ClientHello
# from an application's own TLS (which offers h2 or http/1.1) by these names alone, and never terminates the latter.
H2: Final = "triomesh.h2/1"  # HTTP/2 inside the mesh tunnel
HTTP1: Final = "triomesh.http1/1"  # HTTP/1.1 inside the mesh tunnel
OPAQUE: Final = "triomesh.tcp/1"  # opaque TCP inside the mesh tunnel
HTTP1_OVER_H2: Final = "triomesh.http1-h2/1"  # HTTP/2 whose streams are the application's HTTP/1.1 requests
# A server picks its own most preferred name the client offered: the carriage comes before plain HTTP/1.1, so a
# client offering both gets it from a proxy that knows it and HTTP/1.1 from an older one.
MESH_PROTOCOLS: Final = (H2, HTTP1_OVER_H2, HTTP1, OPAQUE)
_MESH_PREFIX: Final = b"triomesh."
_MAX_NAME: Final = 255  # RFC 7301 3.1: a protocol name is 1..255 bytes


def encode(protocols: Sequence[str]) -> list[bytes]:
    """The names as ALPN wants them; ValueError for an empty list or a name ALPN cannot carry."""
    if not protocols:
        raise ValueError("at least one ALPN protocol is needed")
    names = [name.encode("ascii") for name in protocols]
    for name in names:
        if not 1 <= len(name) <= _MAX_NAME:
            raise ValueError(f"ALPN protocol name {name!r} must be 1 to {_MAX_NAME} bytes")
    return names


def select(offered: Sequence[bytes], supported: Sequence[str]) -> str | None:
    """The server's choice: its own most preferred protocol that the client offered, None without overlap."""
    offers = set(offered)
    return next((name for name in supported if name.encode("ascii") in offers), None)


def check(negotiated: bytes, supported: Sequence[str]) -> str | None:
    """The negotiated protocol if it is one we support; None for no ALPN or anything else."""
    try:
        name = negotiated.decode("ascii")
    except UnicodeDecodeError:
        return None
    return name if name in supported else None


def is_mesh_offer(offered: Sequence[str]) -> bool:
    """Whether a ClientHello's ALPN list comes from a mesh proxy (any name in the mesh's family, known or not:
    a mesh-looking offer we cannot serve is refused, never passed to the application as its own TLS)."""
    return any(name.encode("ascii", "replace").startswith(_MESH_PREFIX) for name in offered)
