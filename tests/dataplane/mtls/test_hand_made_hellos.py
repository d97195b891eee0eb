"""The hand-made ClientHellos the proxy tests send are what they claim to be, read by the proxy's own parser."""

from __future__ import annotations

from dataplane.detect.client_hello import ClientHello, parse_client_hello
from tests.dataplane.detect.hellos import client_hello
from tests.dataplane.mtls.alpn_shim import with_alpn
from tests.dataplane.mtls.clients import MESH_HTTP1
from tests.dataplane.mtls.legacy_hellos import sslv2_client_hello, sslv3_client_hello


def test_the_sslv3_hello_is_a_client_hello_offering_the_mesh_alpn() -> None:
    hello = sslv3_client_hello(MESH_HTTP1)
    assert hello[1:3] == b"\x03\x00" and hello[9:11] == b"\x03\x00"  # SSL 3.0 in the record and the hello
    assert parse_client_hello(hello) == ClientHello(sni=None, alpn=(MESH_HTTP1,))


def test_the_sslv2_hello_is_no_tls_handshake_record() -> None:
    hello = sslv2_client_hello()
    assert hello[0] & 0x80 and hello[2] == 1  # SSL 2 two-byte header, CLIENT-HELLO
    assert parse_client_hello(hello) is None


def test_the_shim_adds_the_mesh_alpn_to_a_hello_without_alpn() -> None:
    changed = with_alpn(client_hello(alpn=None), MESH_HTTP1)
    assert changed is not None
    assert parse_client_hello(changed) == ClientHello(sni="api.example.com", alpn=(MESH_HTTP1,))


def test_the_shim_leaves_what_it_cannot_change() -> None:
    assert with_alpn(client_hello(alpn=["h2"]), MESH_HTTP1) is None  # already offers ALPN
    assert with_alpn(sslv2_client_hello(), MESH_HTTP1) is None
    assert with_alpn(b"GET / HTTP/1.1\r\n\r\n", MESH_HTTP1) is None
