"""Parsing the admin endpoint's requests (pure).

The admin endpoint answers a handful of GETs from meshctl, Prometheus and kubelet probes, so it needs only the
request line: it reads the head, refuses anything odd with the right status, and always closes the connection.
"""

from __future__ import annotations

from typing import Final, NamedTuple
from urllib.parse import parse_qsl, urlsplit

MAX_HEAD: Final = 16384  # bytes of request line + headers; probes and scrapers send a few hundred


class AdminRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]


class BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request_head(head: bytes) -> AdminRequest:
    """``head`` is everything up to and including the blank line."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise BadRequestError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequestError(505 if version.startswith(b"HTTP/") else 400, "unsupported HTTP version")
    if not method.isalpha() or not method.isupper():
        raise BadRequestError(400, "malformed method")
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequestError(400, "non-ASCII request target") from None
    if not text.startswith("/"):
        raise BadRequestError(400, "request target must be a path")
    split = urlsplit(text)
    return AdminRequest(method.decode("ascii"), split.path, dict(parse_qsl(split.query)))
