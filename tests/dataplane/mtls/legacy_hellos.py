"""ClientHellos no TLS library here will send any more (OpenSSL 3 has no SSL 2 or 3): built byte by byte, for
the raw-socket cases. Pure. Layouts: SSL 2.0 CLIENT-HELLO (draft-hickman-netscape-ssl-00, as TLS 1.0 clients
sent it for compatibility, RFC 2246 appendix E.1) and the SSL 3.0 ClientHello (RFC 6101 5.6.1.2) with an ALPN
extension (RFC 7301 3.1)."""

from __future__ import annotations

import os


def sslv2_client_hello() -> bytes:
    """An SSL 2.0-format CLIENT-HELLO offering TLS 1.0: not a TLS handshake record at all."""
    ciphers = bytes.fromhex("01008005008000002f")  # two SSL 2 kinds and TLS_RSA_WITH_AES_128_CBC_SHA
    challenge = os.urandom(16)
    message = b"\x01\x03\x01" + len(ciphers).to_bytes(2, "big") + b"\x00\x00" + len(challenge).to_bytes(2, "big")
    message += ciphers + challenge
    return (0x8000 | len(message)).to_bytes(2, "big") + message


def sslv3_client_hello(alpn: str) -> bytes:
    """An SSL 3.0 ClientHello (version 3.0 in the record and the hello) offering ``alpn``: a mesh ClientHello
    in every respect but its version."""
    name = alpn.encode("ascii")
    protocols = len(name).to_bytes(1, "big") + name
    extension = b"\x00\x10" + (len(protocols) + 2).to_bytes(2, "big") + len(protocols).to_bytes(2, "big") + protocols
    body = b"\x03\x00" + os.urandom(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    body += len(extension).to_bytes(2, "big") + extension
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x00" + len(handshake).to_bytes(2, "big") + handshake
