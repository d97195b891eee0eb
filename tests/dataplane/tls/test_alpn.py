"""The server's ALPN choice and the check both sides make after the handshake."""

from __future__ import annotations

import pytest

from dataplane.tls import alpn


def test_the_server_prefers_its_own_order() -> None:
    assert alpn.select([b"http/1.1", b"h2"], ("h2", "http/1.1")) == "h2"
    assert alpn.select([b"http/1.1"], ("h2", "http/1.1")) == "http/1.1"
    assert alpn.select([b"bogus"], alpn.MESH_PROTOCOLS) is None
    assert alpn.select([], alpn.MESH_PROTOCOLS) is None


def test_check_accepts_only_our_protocols() -> None:
    assert alpn.check(b"triomesh.h2/1", alpn.MESH_PROTOCOLS) == alpn.H2
    assert alpn.check(b"h2", alpn.MESH_PROTOCOLS) is None  # an application's own ALPN is not ours
    assert alpn.check(b"triomesh.tcp/1", alpn.MESH_PROTOCOLS) == alpn.OPAQUE
    assert alpn.check(b"", alpn.MESH_PROTOCOLS) is None  # no ALPN at all (pyOpenSSL's no-overlap outcome)
    assert alpn.check(b"spdy/3", alpn.MESH_PROTOCOLS) is None
    assert alpn.check(b"\xff", alpn.MESH_PROTOCOLS) is None


def test_encode_refuses_what_alpn_cannot_carry() -> None:
    assert alpn.encode(["h2", "http/1.1"]) == [b"h2", b"http/1.1"]
    with pytest.raises(ValueError, match="at least one"):
        alpn.encode([])
    with pytest.raises(ValueError, match="must be 1 to 255 bytes"):
        alpn.encode([""])
    with pytest.raises(ValueError, match="must be 1 to 255 bytes"):
        alpn.encode(["x" * 256])


def test_a_mesh_offer_is_told_from_an_applications_own_tls() -> None:
    assert alpn.is_mesh_offer(["triomesh.http1/1"])
    assert alpn.is_mesh_offer(["triomesh.bogus"])  # mesh-looking but unknown: refused, never passed through
    assert not alpn.is_mesh_offer(["h2", "http/1.1"])
    assert not alpn.is_mesh_offer([])
