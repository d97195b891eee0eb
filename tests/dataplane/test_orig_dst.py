"""Decoding SO_ORIGINAL_DST answers, for both address families."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.net.addr import SockAddr
from dataplane.net.orig_dst import decode_sockaddr_in, decode_sockaddr_in6


def _sockaddr_in(ip: str, port: int) -> bytes:
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip) + b"\0" * 8


def _sockaddr_in6(ip: str, port: int) -> bytes:
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", port)
        + b"\0" * 4
        + socket.inet_pton(socket.AF_INET6, ip)
        + b"\0" * 4
    )


def test_ipv4() -> None:
    assert decode_sockaddr_in(_sockaddr_in("198.18.0.2", 8080)) == SockAddr("198.18.0.2", 8080)


def test_ipv6() -> None:
    assert decode_sockaddr_in6(_sockaddr_in6("fd00::2", 443)) == SockAddr("fd00::2", 443)


@given(st.ip_addresses(v=4), st.integers(0, 65535))
def test_ipv4_round_trip(ip: object, port: int) -> None:
    assert decode_sockaddr_in(_sockaddr_in(str(ip), port)) == SockAddr(str(ip), port)


@given(st.ip_addresses(v=6), st.integers(0, 65535))
def test_ipv6_round_trip(ip: object, port: int) -> None:
    assert decode_sockaddr_in6(_sockaddr_in6(str(ip), port)) == SockAddr(str(ip), port)


def test_wrong_family_and_short_buffers_are_errors() -> None:
    with pytest.raises(ValueError, match="AF_INET"):
        decode_sockaddr_in(_sockaddr_in6("::1", 1)[:16])
    with pytest.raises(ValueError, match="too short"):
        decode_sockaddr_in(b"\x02\x00")
    with pytest.raises(ValueError, match="too short"):
        decode_sockaddr_in6(b"\x0a\x00" * 4)


def test_text_forms() -> None:
    assert str(SockAddr("fd00::2", 443)) == "[fd00::2]:443"
    assert str(SockAddr("10.0.0.1", 80)) == "10.0.0.1:80"
    assert SockAddr.parse("[::1]:15000") == SockAddr("::1", 15000)
    assert SockAddr.parse("127.0.0.1:0") == SockAddr("127.0.0.1", 0)
    for bad in ("localhost:1", "::1:80", "1.2.3.4", "1.2.3.4:99999", ":80"):
        with pytest.raises(ValueError):
            SockAddr.parse(bad)
