from __future__ import annotations

import pytest

from dataplane.admin.request import AdminRequest, BadRequestError, parse_request_head


def test_parses_method_path_and_query() -> None:
    head = b"GET /connections?state=open HTTP/1.1\r\nHost: x\r\n\r\n"
    assert parse_request_head(head) == AdminRequest("GET", "/connections", {"state": "open"})


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / FTP/1.0\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\n\r\n", 400),
    ],
)
def test_rejects_malformed_heads(head: bytes, status: int) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_request_head(head)
    assert info.value.status == status
