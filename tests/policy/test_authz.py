"""Authorization rules and identity patterns (policy.authz) and the meshed-destination lookup (policy.index)."""

from __future__ import annotations

import pytest

from policy.authz import Authorization, IdentityMatcher, pattern_problem
from policy.index import PolicyIndex
from policy.model import (
    AuthorizationRule,
    InboundPolicy,
    MeshedDestination,
    MtlsMode,
    OutboundPolicy,
    Policy,
    PortPolicy,
)

WEB = "spiffe://td/ns/web/sa/frontend"


@pytest.mark.parametrize(
    ("pattern", "identity", "expected"),
    [
        (WEB, WEB, True),
        (WEB, WEB + "2", False),
        ("spiffe://td/ns/web/*", WEB, True),
        ("spiffe://td/ns/web/*", "spiffe://td/ns/webhook/sa/x", False),  # the "/" before * is kept
        ("spiffe://td/*", WEB, True),
        ("spiffe://td/*", "spiffe://other/ns/web/sa/frontend", False),
        ("*", WEB, True),
    ],
)
def test_identity_patterns(pattern: str, identity: str, expected: bool) -> None:
    assert pattern_problem(pattern) is None
    assert IdentityMatcher(pattern).matches(identity) is expected


@pytest.mark.parametrize(
    "pattern", ["web", "spiffe://", "spiffe://td", "spiffe://td/ns/*/sa/x", "spiffe://td/ns//x", "spiffe://*/x"]
)
def test_malformed_patterns_are_named(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


def test_no_rules_allow_everything_and_an_empty_list_denies_everything() -> None:
    assert Authorization(None).allows_tcp(None)
    assert Authorization(None).allows_request(WEB, "GET", "/")
    assert not Authorization(None).configured
    assert not Authorization(()).allows_tcp(WEB)
    assert not Authorization(()).allows_request(WEB, "GET", "/")


def test_http_rules_never_allow_an_opaque_connection() -> None:
    authz = Authorization((AuthorizationRule(identities=(WEB,), methods=("GET",)),))
    assert authz.allows_request(WEB, "GET", "/anything")
    assert not authz.allows_request(WEB, "POST", "/anything")
    assert not authz.allows_tcp(WEB)


def test_paths_match_exactly_or_by_prefix_without_the_query() -> None:
    authz = Authorization((AuthorizationRule(identities=("*",), paths=("/healthz", "/api/*")),))
    assert authz.allows_request(WEB, "GET", "/healthz?verbose=1")
    assert authz.allows_request(WEB, "GET", "/api/v1/items")
    assert not authz.allows_request(WEB, "GET", "/healthz/x")
    assert not authz.allows_request(WEB, "GET", "/admin")


def test_plaintext_clients_need_unauthenticated() -> None:
    authz = Authorization((AuthorizationRule(identities=("*",)),))
    assert authz.allows_tcp(WEB)
    assert not authz.allows_tcp(None)
    assert Authorization((AuthorizationRule(unauthenticated=True),)).allows_tcp(None)


def test_port_entries_override_the_direction() -> None:
    deny_all = PortPolicy(port=9000, mtls=MtlsMode.PERMISSIVE, authorization=())
    index = PolicyIndex(
        Policy(
            inbound=InboundPolicy(
                mtls=MtlsMode.STRICT, authorization=(AuthorizationRule(identities=("*",)),), ports=(deny_all,)
            )
        )
    )
    assert index.inbound(8080).mtls is MtlsMode.STRICT
    assert index.inbound(8080).authorization.allows_tcp(WEB)
    assert index.inbound(9000).mtls is MtlsMode.PERMISSIVE
    assert not index.inbound(9000).authorization.allows_tcp(WEB)
    assert index.requires_identity


def test_meshed_destinations_first_match_wins_and_ports_narrow() -> None:
    index = PolicyIndex(
        Policy(
            outbound=OutboundPolicy(
                meshed=(
                    MeshedDestination(cidr="10.0.0.5/32", identity=WEB, ports=(80,)),
                    MeshedDestination(cidr="10.0.0.0/16", identity="spiffe://td/*"),
                )
            )
        )
    )
    first = index.meshed("10.0.0.5", 80)
    assert first is not None and first.expected.pattern == WEB
    other_port = index.meshed("10.0.0.5", 81)
    assert other_port is not None and other_port.expected.pattern == "spiffe://td/*"
    assert index.meshed("::ffff:10.0.0.7", 443) is not None  # a dual-stack socket's view of an IPv4 peer
    assert index.meshed("10.1.0.1", 80) is None
    assert index.meshed("fd00::1", 80) is None
    assert index.requires_identity
    assert not PolicyIndex(Policy()).requires_identity
