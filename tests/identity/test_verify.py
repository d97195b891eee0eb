"""SVID verification of peer chains: the accepted shape, and every shape reliability.md G4/A6 says to refuse."""

from __future__ import annotations

from datetime import timedelta

import pytest

from identity.authority import Authority
from identity.spiffe import parse_spiffe_id
from identity.verify import Rejection, RejectReason, TrustBundle, TrustBundleError, verify_peer_chain
from identity.x509 import (
    CRL_SIGN,
    DIGITAL_SIGNATURE,
    KEY_CERT_SIGN,
    SERVER_AUTH,
    Certificate,
    CertSpec,
    PrivateKey,
    build_certificate,
)
from tests.identity.pki import BACKEND, FRONTEND, NOW, Pki, leaf_spec


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def verify(pki: Pki, chain: list[Certificate], **kwargs: object) -> object:
    options: dict[str, object] = {"trust_domain": "example.org", "now": NOW, **kwargs}
    return verify_peer_chain(chain, pki.bundle, **options)  # type: ignore[arg-type]


def rejected(result: object, reason: RejectReason, *words: str) -> None:
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    for word in words:
        assert word in result.detail, result


def test_a_well_formed_svid_gives_its_spiffe_id(pki: Pki) -> None:
    leaf, _ = pki.sign(leaf_spec())
    assert verify(pki, [leaf]) == parse_spiffe_id(FRONTEND)
    # The anchor may be sent too (some peers do): it is ignored, ours is used.
    assert verify(pki, [leaf, pki.root.cert]) == parse_spiffe_id(FRONTEND)


def test_the_issued_svid_passes_and_names_its_reason_as_a_label(pki: Pki) -> None:
    svid = pki.svid(BACKEND)
    assert verify(pki, [svid.cert], expected=parse_spiffe_id(BACKEND)) == parse_spiffe_id(BACKEND)
    assert str(RejectReason.BAD_SVID) == "bad_svid"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"uris": (FRONTEND, BACKEND)}, ["2 URI SANs"]),
        ({"uris": (), "dns_names": ("frontend.default.svc",)}, ["no URI SAN"]),
        ({"uris": ("https://example.org/ns/default/sa/frontend",)}, ["must start with 'spiffe://'"]),
        ({"uris": ("spiffe://example.org",)}, ["has no path"]),
        ({"uris": ("spiffe://example.org/ns//sa",)}, ["empty path segment"]),
        ({"ca": True, "key_usage": frozenset({DIGITAL_SIGNATURE, KEY_CERT_SIGN})}, ["is a CA"]),
        ({"key_usage": frozenset({DIGITAL_SIGNATURE, CRL_SIGN})}, ["cRLSign"]),
        ({"key_usage": frozenset({"keyEncipherment"})}, ["lacks digitalSignature"]),
        ({"extended_key_usage": frozenset({SERVER_AUTH})}, ["serverAuth or clientAuth"]),
        ({"uris": ("spiffe://other.org/ns/default/sa/frontend",)}, ["not in trust domain 'example.org'"]),
    ],
)
def test_bad_svid_shapes_signed_by_our_ca_are_refused(pki: Pki, changes: dict[str, object], words: list[str]) -> None:
    leaf, _ = pki.sign(leaf_spec(**changes))  # type: ignore[arg-type]
    rejected(verify(pki, [leaf]), RejectReason.BAD_SVID, *words)


def test_a_dns_san_next_to_the_uri_san_is_allowed(pki: Pki) -> None:
    leaf, _ = pki.sign(leaf_spec(dns_names=("frontend.default.svc",)))
    assert verify(pki, [leaf]) == parse_spiffe_id(FRONTEND)


def test_no_extended_key_usage_is_allowed(pki: Pki) -> None:
    leaf, _ = pki.sign(leaf_spec(extended_key_usage=None))
    assert verify(pki, [leaf]) == parse_spiffe_id(FRONTEND)


def test_expired_and_not_yet_valid(pki: Pki) -> None:
    expired, _ = pki.sign(leaf_spec(not_before=NOW - timedelta(days=2), not_after=NOW - timedelta(seconds=1)))
    rejected(verify(pki, [expired]), RejectReason.EXPIRED, "expired at")
    early, _ = pki.sign(leaf_spec(not_before=NOW + timedelta(seconds=1), not_after=NOW + timedelta(days=1)))
    rejected(verify(pki, [early]), RejectReason.NOT_YET_VALID, "valid only from")
    # The window is checked against the time passed in, not the machine's clock.
    assert verify(pki, [early], now=NOW + timedelta(hours=1)) == parse_spiffe_id(FRONTEND)


def test_an_expired_anchor_fails_the_chain() -> None:
    pki = Pki()
    leaf, _ = pki.sign(leaf_spec())
    rejected(verify(pki, [leaf], now=pki.root.cert.not_after + timedelta(seconds=1)), RejectReason.EXPIRED)


def test_another_ca_is_unknown(pki: Pki) -> None:
    stranger = Pki()  # same trust domain, same subject name, another key
    leaf, _ = stranger.sign(leaf_spec())
    rejected(verify(pki, [leaf]), RejectReason.UNKNOWN_CA, "not by our trust bundle")
    # Sending the stranger's root along does not help: it is not in our bundle.
    rejected(verify(pki, [leaf, stranger.root.cert]), RejectReason.UNKNOWN_CA)


def test_a_self_signed_leaf_is_unknown(pki: Pki) -> None:
    leaf = build_certificate(leaf_spec(), PrivateKey.generate())
    rejected(verify(pki, [leaf]), RejectReason.UNKNOWN_CA)


def test_wrong_expected_identity(pki: Pki) -> None:
    leaf, _ = pki.sign(leaf_spec())
    rejected(verify(pki, [leaf], expected=parse_spiffe_id(BACKEND)), RejectReason.PEER_IDENTITY_MISMATCH, BACKEND)


def test_a_bundle_of_two_roots_accepts_both_during_rotation() -> None:
    old, new = Pki(), Pki()
    both = TrustBundle((old.root.cert, new.root.cert))
    for pki in (old, new):
        leaf, _ = pki.sign(leaf_spec())
        assert verify_peer_chain([leaf], both, trust_domain="example.org", now=NOW) == parse_spiffe_id(FRONTEND)


def _deep_root() -> Pki:
    """A PKI whose root allows an intermediate below it (``ca init`` roots sign leaves only)."""
    pki = Pki()
    key = PrivateKey.generate()
    spec = CertSpec(
        common_name="deep root",
        uris=("spiffe://example.org",),
        ca=True,
        key_usage=frozenset({KEY_CERT_SIGN}),
        extended_key_usage=None,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=1),
    )
    pki.root = Authority("example.org", build_certificate(spec, key), key)
    pki.bundle = TrustBundle((pki.root.cert,))
    return pki


def test_a_chain_through_a_ca_intermediate_is_accepted() -> None:
    pki = _deep_root()
    intermediate = pki.intermediate()
    leaf, _ = pki.sign(leaf_spec(), issuer=intermediate)
    assert verify(pki, [leaf, intermediate[0]]) == parse_spiffe_id(FRONTEND)
    # Without the intermediate there is no path.
    rejected(verify(pki, [leaf]), RejectReason.UNKNOWN_CA)


def test_a_chain_through_a_non_ca_intermediate_is_refused() -> None:
    pki = _deep_root()
    intermediate = pki.intermediate(ca=False)
    leaf, _ = pki.sign(leaf_spec(), issuer=intermediate)
    rejected(verify(pki, [leaf, intermediate[0]]), RejectReason.BAD_SVID, "is not a CA")


def test_a_root_with_path_length_zero_refuses_an_intermediate(pki: Pki) -> None:
    intermediate = pki.intermediate()
    leaf, _ = pki.sign(leaf_spec(), issuer=intermediate)
    rejected(verify(pki, [leaf, intermediate[0]]), RejectReason.BAD_SVID, "allows 0 intermediate")


def test_an_intermediate_with_a_workload_id_is_refused() -> None:
    pki = _deep_root()
    spec = CertSpec(
        uris=(BACKEND,),
        ca=True,
        key_usage=frozenset({KEY_CERT_SIGN}),
        extended_key_usage=None,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=1),
    )
    intermediate = pki.sign(spec)
    leaf, _ = pki.sign(leaf_spec(), issuer=intermediate)
    rejected(verify(pki, [leaf, intermediate[0]]), RejectReason.BAD_SVID, "workload ID")


def test_an_empty_chain_is_refused(pki: Pki) -> None:
    rejected(verify(pki, []), RejectReason.BAD_SVID, "no certificate")


def test_a_long_chain_is_cut_off() -> None:
    pki = _deep_root()
    issuer = (pki.root.cert, pki.root.key)
    sent: list[Certificate] = []
    for _ in range(12):
        spec = CertSpec(
            common_name=f"level {len(sent)}",
            ca=True,
            key_usage=frozenset({KEY_CERT_SIGN}),
            extended_key_usage=None,
            not_before=NOW - timedelta(days=1),
            not_after=NOW + timedelta(days=1),
        )
        issuer = pki.sign(spec, issuer=issuer)
        sent.insert(0, issuer[0])
    leaf, _ = pki.sign(leaf_spec(), issuer=issuer)
    rejected(verify(pki, [leaf, *sent]), RejectReason.UNKNOWN_CA, "within 8 intermediates")


def test_a_bundle_must_hold_cas(pki: Pki) -> None:
    leaf, _ = pki.sign(leaf_spec())
    with pytest.raises(TrustBundleError, match="is not a CA"):
        TrustBundle.from_pem(leaf.to_pem())
    with pytest.raises(TrustBundleError, match="no PEM certificate"):
        TrustBundle.from_pem(b"hello")
    assert TrustBundle.from_pem(pki.root.cert.to_pem()).anchors == (pki.root.cert,)
