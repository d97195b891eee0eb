"""The HTTP/2 part of the error vocabulary: every h2 exception is mapped to one of these in conn.py.

``retryable`` says whether the request never reached the peer's application, so the caller may send it again on
a new connection (RFC 9113 8.7: streams above a GOAWAY's last id and REFUSED_STREAM are unprocessed).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from dataplane.errors import ProxyError


class H2ErrorCode(IntEnum):
    """RFC 9113 section 7 error codes (our own copy, so h2's enum never leaks out of conn.py)."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def error_code_name(code: int) -> str:
    """``CANCEL`` for 8; unknown codes (legal on the wire) as hex."""
    try:
        return H2ErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


class H2Error(ProxyError):
    reason = "h2_error"
    retryable: ClassVar[bool] = False


class H2ConnectionClosedError(H2Error):
    """The connection ended (peer closed, reset, or we closed it) before this stream finished."""

    reason = "h2_connection_closed"


class H2ProtocolError(H2Error):
    """The peer broke the HTTP/2 protocol; the connection was closed with GOAWAY."""

    reason = "h2_protocol_error"


class H2FloodError(H2ProtocolError):
    """A flood defence tripped (kind in ``kind``); the connection was closed with GOAWAY."""

    reason = "h2_flood"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class H2KeepaliveTimeoutError(H2Error):
    """The peer did not answer a keepalive PING in time; the connection was closed."""

    reason = "h2_keepalive_timeout"


class H2GoAwayError(H2Error):
    """No new stream: the connection is going away (GOAWAY sent or received). Open a new connection."""

    reason = "h2_goaway"
    retryable = True


class H2StreamResetError(H2Error):
    """The stream was reset: by the peer (``remote``) or by us."""

    reason = "h2_stream_reset"

    def __init__(self, message: str, *, code: int, remote: bool) -> None:
        super().__init__(message)
        self.code = code
        self.remote = remote


class H2StreamRefusedError(H2StreamResetError):
    """The peer did not process this stream (REFUSED_STREAM, or above a GOAWAY's last id): safe to retry."""

    reason = "h2_stream_refused"
    retryable = True


class H2InvalidResponseError(H2Error):
    """The upstream's response headers failed validation; the stream was reset (the caller answers 502)."""

    reason = "h2_bad_response"
