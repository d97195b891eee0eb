"""Real ClientHello bytes, made by the stdlib ssl module through memory BIOs (no network)."""

from __future__ import annotations

import contextlib
import ssl


def client_hello(server_name: str | None = "api.example.com", alpn: list[str] | None = None) -> bytes:
    """The first flight a TLS client sends: the records carrying its ClientHello."""
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello we never send
        conn.do_handshake()
    return outgoing.read()


def split_into_records(hello: bytes, first: int) -> bytes:
    """The same ClientHello carried by two handshake records, the first holding ``first`` payload bytes."""
    header, payload = hello[:5], hello[5:]
    one, two = payload[:first], payload[first:]
    return header[:3] + len(one).to_bytes(2, "big") + one + header[:3] + len(two).to_bytes(2, "big") + two
