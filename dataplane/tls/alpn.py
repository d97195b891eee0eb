"""ALPN between proxies: the inner protocol a mesh connection carries, chosen by the server, checked by both.

Pure. pyOpenSSL completes a handshake without ALPN when the server's select callback finds no overlap
(reliability.md A7), so the choice is made here and the proxy checks the outcome itself (``check``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

H2: Final = "h2"
HTTP1: Final = "http/1.1"
OPAQUE: Final = "triomesh.tcp/1"  # opaque TCP relayed inside the mesh tunnel; no public protocol uses the name
MESH_PROTOCOLS: Final = (H2, HTTP1, OPAQUE)
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
