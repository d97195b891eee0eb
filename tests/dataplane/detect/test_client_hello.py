"""parse_client_hello(): SNI and ALPN from real hellos, None for anything malformed, never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.detect.client_hello import ClientHello, first_record_end, parse_client_hello
from tests.dataplane.detect.hellos import client_hello, split_into_records


def test_sni_and_alpn_of_a_real_hello() -> None:
    hello = client_hello("API.Example.com", alpn=["h2", "http/1.1"])
    assert parse_client_hello(hello) == ClientHello(sni="api.example.com", alpn=("h2", "http/1.1"))
    assert first_record_end(hello) == len(hello)


def test_a_hello_without_sni_or_alpn() -> None:
    assert parse_client_hello(client_hello(None)) == ClientHello(sni=None, alpn=())


@pytest.mark.parametrize("first", [1, 3, 4, 40, 200])
def test_a_hello_split_over_two_records_is_reassembled(first: int) -> None:
    split = split_into_records(client_hello("db.internal", alpn=["h2"]), first)
    assert parse_client_hello(split) == ClientHello(sni="db.internal", alpn=("h2",))
    assert first_record_end(split) == 5 + first


def test_truncated_hellos_are_none() -> None:
    hello = client_hello()
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) is None
    split = split_into_records(hello, 100)
    assert parse_client_hello(split[: 5 + 100 + 5]) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x00\x00",
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # a ClientHello with no body at all
        b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",  # claims 16 MiB
    ],
)
def test_malformed_input_is_none(data: bytes) -> None:
    assert parse_client_hello(data) is None


def test_a_bad_server_name_makes_the_hello_malformed() -> None:
    hello = bytearray(client_hello("aaaa.example"))
    at = hello.index(b"aaaa.example")
    hello[at] = 0x20  # a space is not a host name character
    assert parse_client_hello(bytes(hello)) is None


@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_client_hello(data)
    parse_client_hello(b"\x16\x03\x01" + data)
    first_record_end(data)


HELLO = client_hello("fuzz.example", alpn=["h2"])


@given(st.lists(st.tuples(st.integers(0, len(HELLO) - 1), st.integers(0, 255)), max_size=8))
def test_a_mutated_real_hello_never_raises(mutations: list[tuple[int, int]]) -> None:
    data = bytearray(HELLO)
    for at, value in mutations:
        data[at] = value
    result = parse_client_hello(bytes(data))
    assert result is None or isinstance(result, ClientHello)
