"""What counts as proof that the two hops spoke mTLS: every connection each hop reports is TLS with the peer
identity expected there, and Envoy counted only TLS 1.3 handshakes."""

from __future__ import annotations

import msgspec

from perf.mtls_proof import envoy_problem, triomesh_problem

HOP1 = "spiffe://cluster.local/ns/bench/sa/hop1"


def _record(
    number: int, *, tls: object = True, client_id: str | None = HOP1, direction: str = "inbound"
) -> dict[str, object]:
    return {
        "id": number,
        "direction": direction,
        "client": f"127.0.0.1:{40000 + number}",
        "tls": tls,
        "client_id": client_id,
    }


def _connections(open_: list[dict[str, object]], recent: list[dict[str, object]] = []) -> bytes:  # noqa: B006 - never mutated
    return msgspec.json.encode({"open": open_, "recent": recent, "opened_total": 0, "closed_total": 0})


def _check(report: bytes) -> str | None:
    return triomesh_problem(report, hop="hop 2", direction="inbound", peer_key="client_id", peer_id=HOP1)


def test_every_connection_tls_with_the_expected_peer_is_proof() -> None:
    assert _check(_connections([_record(1)], [_record(2), _record(3, direction="outbound", tls=False)])) is None
    assert _check(_connections([_record(1, tls="true")])) is None  # the label value, as /metrics has it


def test_a_plaintext_connection_open_or_recent_refuses_the_measurement() -> None:
    for report in (
        _connections([_record(1), _record(2, tls=False, client_id=None)]),
        _connections([], [_record(1), _record(2, tls="no_identity")]),
    ):
        problem = _check(report)
        assert problem is not None and "connection 2" in problem and "plaintext fallback" in problem


def test_another_peer_identity_refuses_the_measurement() -> None:
    problem = _check(_connections([_record(1, client_id="spiffe://cluster.local/ns/x/sa/y")]))
    assert problem is not None and "client_id='spiffe://cluster.local/ns/x/sa/y'" in problem and HOP1 in problem


def test_nothing_recorded_or_no_document_is_no_proof() -> None:
    assert _check(_connections([], [_record(1, direction="outbound")])) == "hop 2: no inbound connection recorded"
    assert "not JSON" in (_check(b"<html>") or "")
    assert "not a JSON object" in (_check(b"[]") or "")


LISTENER_STATS = """\
listener.127.0.0.1_28012.ssl.connection_error: 0
listener.127.0.0.1_28012.ssl.handshake: 51
listener.127.0.0.1_28012.ssl.no_certificate: 0
listener.127.0.0.1_28012.ssl.versions.TLSv1.3: 51
listener.127.0.0.1_28012.ssl.ciphers.TLS_AES_128_GCM_SHA256: 51
cluster.upstream.ssl.handshake: 0
"""
CLUSTER_STATS = "cluster.upstream.ssl.handshake: 51\ncluster.upstream.ssl.versions.TLSv1.3: 51\n"


def test_envoy_tls13_handshakes_on_hop2s_listener_and_hop1s_cluster_are_proof() -> None:
    assert envoy_problem(LISTENER_STATS, hop="hop 2", listener=("127.0.0.1", 28012)) is None
    assert envoy_problem(CLUSTER_STATS, hop="hop 1") is None


def test_envoy_without_handshakes_or_with_older_tls_is_no_proof() -> None:
    assert (
        envoy_problem(LISTENER_STATS, hop="hop 1") == "hop 1: no TLS handshake counted (cluster.upstream.ssl.handshake)"
    )
    other_port = envoy_problem(LISTENER_STATS, hop="hop 2", listener=("127.0.0.1", 28099))
    assert other_port is not None and "no TLS handshake" in other_port
    older = CLUSTER_STATS.replace("TLSv1.3: 51", "TLSv1.3: 50") + "cluster.upstream.ssl.versions.TLSv1.2: 1\n"
    assert envoy_problem(older, hop="hop 1") == "hop 1: 51 TLS handshakes, of which 50 TLS 1.3"
