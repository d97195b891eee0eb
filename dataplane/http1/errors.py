"""The one error the HTTP/1.1 parser raises: what was wrong, the status to answer, a metric-label reason."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a message was rejected: a closed set, used as the ``reason`` metric label and in access logs."""

    BAD_REQUEST_LINE = "bad_request_line"
    REQUEST_LINE_TOO_LONG = "request_line_too_long"
    BAD_VERSION = "bad_version"
    HEADERS_TOO_LARGE = "headers_too_large"
    BAD_HEADER = "bad_header"
    BAD_HOST = "bad_host"
    TE_AND_CL = "te_and_cl"
    BAD_CONTENT_LENGTH = "bad_content_length"
    BAD_TRANSFER_ENCODING = "bad_transfer_encoding"
    UNSUPPORTED_TRANSFER_CODING = "unsupported_transfer_coding"
    BAD_CHUNK = "bad_chunk"
    INCOMPLETE_MESSAGE = "incomplete_message"
    # Response side only (the proxy answers 502 and discards the upstream connection).
    BAD_STATUS_LINE = "bad_status_line"
    TOO_MANY_INFORMATIONAL = "too_many_informational"
    UNEXPECTED_SWITCH = "unexpected_switch"
    UNSOLICITED_RESPONSE = "unsolicited_response"


class Http1Error(Exception):
    """A message the proxy must not forward. The connection it came from must be closed, never reused.

    ``status`` is what to answer the client: 4xx/5xx for a bad request, always 502 for a bad upstream response.
    """

    def __init__(self, reason: Reason, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"Http1Error({self.reason.value}, {self.status}, {str(self)!r})"
