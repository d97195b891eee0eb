"""How the HTTP/1.1 proxy names and handles an upstream that failed, in one place for the trio loop
(``proxy.py``) and the epoll engine (``engine.py``). Pure."""

from __future__ import annotations

from typing import Final

from dataplane.http1.errors import Http1Error
from dataplane.net.addr import SockAddr

# RFC 9110 9.2.2: repeating one of these has the effect of sending it once.
IDEMPOTENT_METHODS: Final = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


def replayable(method: bytes, *, upgrade: bool, reused: bool, heard: bool, responded: bool) -> bool:
    """Whether a failed exchange may be sent once more on a fresh connection (RFC 9112 9.3.1): a reused idle
    connection gave not a byte back (the server closed it as we reused it, so the application never saw the
    request), nothing of a response reached the client, and repeating the request is harmless."""
    return reused and not heard and not responded and not upgrade and method in IDEMPOTENT_METHODS


def unreachable(upstream: SockAddr, reason: str) -> str:
    """The x-triomesh-error of a 503: no connection to ``upstream`` (refused, unreachable, connect timeout)."""
    return f"upstream {upstream} unreachable: {reason}"


def bad_response(exc: Http1Error, *, heard: bool) -> tuple[str, str]:
    """(x-triomesh-error, metric error label) of a 502 for a response the parser refused; a close before any
    byte is no response at all, not a malformed one."""
    if not heard:
        return "upstream closed without a response", "upstream_reset"
    return f"bad response from upstream: {exc.reason.value}", "bad_response"
