"""SPIFFE ID parsing per spiffe/spiffe standards/SPIFFE-ID.md."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from identity.spiffe import SpiffeId, SpiffeIdError, parse_spiffe_id, parse_trust_domain


def test_workload_and_trust_domain_ids() -> None:
    parsed = parse_spiffe_id("spiffe://example.org/ns/default/sa/frontend")
    assert parsed == SpiffeId("example.org", "/ns/default/sa/frontend")
    assert parsed.is_workload
    assert str(parsed) == "spiffe://example.org/ns/default/sa/frontend"
    root = parse_spiffe_id("spiffe://my_domain-1.example")
    assert root == SpiffeId("my_domain-1.example")
    assert not root.is_workload
    assert parse_spiffe_id("spiffe://td/A.b-C_9").path == "/A.b-C_9"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("http://example.org/ns/a", "must start with 'spiffe://'"),
        ("SPIFFE://example.org/ns/a", "scheme must be lowercase"),
        ("spiffe://Example.org/ns/a", "trust domain must be lowercase"),
        ("spiffe://example.org:8443/ns/a", "a port is not allowed"),
        ("spiffe://user@example.org/ns/a", "userinfo is not allowed"),
        ("spiffe:///ns/a", "the trust domain is empty"),
        ("spiffe://exa mple.org/ns/a", "may hold only a-z"),
        ("spiffe://example.org/ns//a", "empty path segment"),
        ("spiffe://example.org/ns/a/", "empty path segment"),
        ("spiffe://example.org/", "empty path segment"),
        ("spiffe://example.org/ns/./a", "'.' and '..'"),
        ("spiffe://example.org/ns/../a", "'.' and '..'"),
        ("spiffe://example.org/ns/a?x=1", "a query is not allowed"),
        ("spiffe://example.org/ns/a#frag", "a fragment is not allowed"),
        ("spiffe://example.org/ns/a%20b", "percent-encoding"),
        ("spiffe://example.org/ns/a b", "may hold only letters"),
        ("spiffe://example.org/" + "a" * 2100, "longer than 2048 bytes"),
        ("spiffe://" + "a" * 256, "longer than 255"),
    ],
)
def test_malformed_ids_name_the_rule(text: str, rule: str) -> None:
    with pytest.raises(SpiffeIdError, match=re.escape(rule)):
        parse_spiffe_id(text)


def test_bare_trust_domain() -> None:
    assert parse_trust_domain("example.org") == "example.org"
    with pytest.raises(SpiffeIdError, match=r"invalid trust domain 'Example\.org': the trust domain must be lowercase"):
        parse_trust_domain("Example.org")


_ID_TEXT = st.text(alphabet="spifeexample.org/:_-.%?#@AZaz09 ", max_size=60)


@given(st.one_of(_ID_TEXT, _ID_TEXT.map(lambda rest: "spiffe://" + rest)))
def test_any_text_parses_or_is_refused_with_a_reason(text: str) -> None:
    try:
        parsed = parse_spiffe_id(text)
    except SpiffeIdError as exc:
        assert str(exc)
    else:
        assert str(parsed) == text  # a valid ID has exactly one spelling
