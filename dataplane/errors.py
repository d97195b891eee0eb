"""One error vocabulary for the data plane (ztunnel/httpcore style).

Library and OS errors are mapped to these at the boundary where they happen. Each class has a stable ``reason``
(snake_case, a closed set) used as the connection table's close reason, in logs and in metric labels, and a
message that tells the operator what to do.
"""

from __future__ import annotations

import errno as _errno
from typing import ClassVar


class ProxyError(Exception):
    reason: ClassVar[str] = "proxy_error"

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)


class NoOriginalDestinationError(ProxyError):
    reason = "no_original_dst"


class RedirectLoopError(ProxyError):
    reason = "redirect_loop"


class ClientResetError(ProxyError):
    """The client reset the connection before the proxy relayed anything (during protocol detection)."""

    reason = "client_reset"


class ConnectError(ProxyError):
    reason = "connect_error"


class ConnectRefusedError(ConnectError):
    reason = "connect_refused"


class ConnectTimeoutError(ConnectError):
    reason = "connect_timeout"


class ConnectUnreachableError(ConnectError):
    reason = "connect_unreachable"


class NoIdentityError(ConnectError):
    """The policy needs mesh TLS here but the proxy has no valid identity (no --identity, or it is not loaded)."""

    reason = "no_identity"


class NoEndpointError(ConnectError):
    """A service has no endpoint to send to: none listed, or all ejected past the fail-fast timeout."""

    reason = "no_endpoints"


class QueueFullError(ConnectError):
    """A service's request queue is at capacity: the request is shed (503) rather than queued."""

    reason = "queue_full"


class PlaintextRefusedError(ProxyError):
    """A strict mTLS port got something other than a mesh proxy's ClientHello."""

    reason = "plaintext_refused"


class AuthzDeniedError(ProxyError):
    """The port's authorization rules do not allow this client (an opaque TCP connection)."""

    reason = "authz_denied"


def errno_name(code: int | None) -> str:
    """``ECONNRESET`` for 104; "" for no error (Linkerd's ``errno`` label is empty on a clean close)."""
    if not code:
        return ""
    return _errno.errorcode.get(code, str(code))


def connect_error_for(code: int, target: str) -> ConnectError:
    """Map a failed connect(2) to the error an operator can act on."""
    name = errno_name(code)
    if code == _errno.ECONNREFUSED:
        return ConnectRefusedError(f"{target} refused the connection: nothing listens there", errno=code)
    if code == _errno.ETIMEDOUT:
        return ConnectTimeoutError(f"connect to {target} timed out in the kernel ({name})", errno=code)
    if code in (_errno.EHOSTUNREACH, _errno.ENETUNREACH, _errno.EADDRNOTAVAIL):
        return ConnectUnreachableError(f"{target} is unreachable ({name}): check routes in the pod", errno=code)
    return ConnectError(f"connect to {target} failed ({name})", errno=code)
