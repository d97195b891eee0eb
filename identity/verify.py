"""X.509-SVID verification of a peer's certificate chain, in our own code.

OpenSSL accepts shapes an SVID must not have (a CA:TRUE leaf, two URI SANs: reliability.md A7), and its
hostname checks know nothing of SPIFFE, so the TLS layer hands every peer chain to ``verify_peer_chain``. The
rules are spiffe/spiffe ``standards/X509-SVID.md`` (reliability.md A6) plus RFC 5280 path validation reduced
to what a mesh PKI uses: signatures up to an anchor of the trust bundle, every signing certificate a CA
allowed to sign certificates within its path length, every certificate inside its validity window at ``now``.

Pure: certificates and a time in, the peer's ``SpiffeId`` or a ``Rejection`` out. A rejection's ``reason`` is
a closed set meant for metric labels; its ``detail`` is for the log line.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from identity.spiffe import SpiffeId, SpiffeIdError, parse_spiffe_id
from identity.x509 import (
    CLIENT_AUTH,
    CRL_SIGN,
    DIGITAL_SIGNATURE,
    KEY_CERT_SIGN,
    SERVER_AUTH,
    Certificate,
    X509Error,
    load_pem_certificates,
)

MAX_CHAIN: Final = 8  # certificates between the leaf and an anchor; a mesh PKI has 0 or 1, attackers send more


class RejectReason(enum.StrEnum):
    """Why a peer chain was refused: the metric label (reliability.md G4 names)."""

    UNKNOWN_CA = "unknown_ca"  # no signature path to an anchor of our trust bundle
    EXPIRED = "expired"  # a certificate on the path is past notAfter
    NOT_YET_VALID = "not_yet_valid"  # a certificate on the path is before notBefore
    BAD_SVID = "bad_svid"  # the leaf or a signing certificate breaks an X509-SVID rule, or the wrong trust domain
    PEER_IDENTITY_MISMATCH = "peer_identity_mismatch"  # a valid SVID, but not the identity the caller expected


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class TrustBundleError(ValueError):
    """A trust bundle we cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The CA certificates (trust anchors) a peer chain must lead to. Several during a root rotation."""

    anchors: tuple[Certificate, ...]

    @classmethod
    def from_pem(cls, data: bytes) -> TrustBundle:
        try:
            anchors = tuple(load_pem_certificates(data))
        except X509Error as exc:
            raise TrustBundleError(str(exc)) from None
        for anchor in anchors:
            if not anchor.is_ca:
                raise TrustBundleError(f"certificate {anchor.subject!r} is not a CA (basicConstraints cA is false)")
            if anchor.key_usage is not None and KEY_CERT_SIGN not in anchor.key_usage:
                raise TrustBundleError(f"CA {anchor.subject!r} lacks keyUsage keyCertSign")
        return cls(anchors)

    def issuer_of(self, cert: Certificate) -> Certificate | None:
        """The anchor that signed ``cert`` (the same subject as its issuer and a valid signature), if any."""
        return next((anchor for anchor in self.anchors if cert.issued_by(anchor)), None)


def verify_peer_chain(
    chain: Sequence[Certificate],
    bundle: TrustBundle,
    *,
    trust_domain: str,
    now: datetime,
    expected: SpiffeId | None = None,
) -> SpiffeId | Rejection:
    """Verify a peer's chain (leaf first, as sent on the wire) and return its SPIFFE ID.

    Checks, in order, and the first failure is the answer: a signature path to the bundle (unknown_ca), each
    signing certificate's CA rules (bad_svid), every validity window on the path (expired, not_yet_valid), the
    leaf's SVID shape and trust domain (bad_svid), then ``expected`` when given (peer_identity_mismatch).
    """
    if not chain:
        return Rejection(RejectReason.BAD_SVID, "the peer sent no certificate")
    path = _path_to_anchor(chain, bundle)
    if isinstance(path, Rejection):
        return path
    for depth, signer in enumerate(path[1:], start=1):
        problem = _signing_problem(signer, intermediates_below=depth - 1, is_anchor=depth == len(path) - 1)
        if problem is not None:
            return Rejection(RejectReason.BAD_SVID, f"signing certificate {signer.subject!r} {problem}")
    for cert in path:
        window = validity_problem(cert, now)
        if window is not None:
            return window
    leaf_id = svid_id(chain[0])
    if isinstance(leaf_id, Rejection):
        return leaf_id
    if not leaf_id.in_trust_domain(trust_domain):
        return Rejection(RejectReason.BAD_SVID, f"{leaf_id} is not in trust domain {trust_domain!r}")
    if expected is not None and leaf_id != expected:
        return Rejection(RejectReason.PEER_IDENTITY_MISMATCH, f"peer is {leaf_id}, expected {expected}")
    return leaf_id


def svid_id(leaf: Certificate) -> SpiffeId | Rejection:
    """The SPIFFE ID of an X509-SVID leaf, or why the certificate is not one (X509-SVID.md 4 and 5)."""
    uris = leaf.uri_sans
    if len(uris) != 1:
        shape = "no URI SAN" if not uris else f"{len(uris)} URI SANs"
        return Rejection(RejectReason.BAD_SVID, f"leaf has {shape}; an SVID has exactly one spiffe:// URI SAN")
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except SpiffeIdError as exc:
        return Rejection(RejectReason.BAD_SVID, f"leaf URI SAN: {exc}")
    if not spiffe_id.is_workload:
        return Rejection(RejectReason.BAD_SVID, f"leaf ID {spiffe_id} has no path (that names a trust domain)")
    if leaf.is_ca:
        return Rejection(RejectReason.BAD_SVID, "leaf is a CA (basicConstraints cA must be false)")
    usage = leaf.key_usage
    if usage is None or DIGITAL_SIGNATURE not in usage:
        return Rejection(RejectReason.BAD_SVID, "leaf keyUsage lacks digitalSignature")
    signing = usage & {KEY_CERT_SIGN, CRL_SIGN}
    if signing:
        return Rejection(RejectReason.BAD_SVID, f"leaf keyUsage has {', '.join(sorted(signing))}")
    purposes = leaf.extended_key_usage
    if purposes is not None and not {SERVER_AUTH, CLIENT_AUTH} <= purposes:
        return Rejection(RejectReason.BAD_SVID, "leaf extendedKeyUsage lacks serverAuth or clientAuth")
    return spiffe_id


def validity_problem(cert: Certificate, now: datetime) -> Rejection | None:
    if now < cert.not_before:
        return Rejection(RejectReason.NOT_YET_VALID, f"{_who(cert)} is valid only from {cert.not_before.isoformat()}")
    if now > cert.not_after:
        return Rejection(RejectReason.EXPIRED, f"{_who(cert)} expired at {cert.not_after.isoformat()}")
    return None


def _path_to_anchor(chain: Sequence[Certificate], bundle: TrustBundle) -> list[Certificate] | Rejection:
    """Leaf, the intermediates the peer sent that link it upwards, and the anchor that ends the path."""
    path = [chain[0]]
    offered = list(chain[1:])
    for _ in range(MAX_CHAIN + 1):
        current = path[-1]
        anchor = bundle.issuer_of(current)
        if anchor is not None:
            return [*path, anchor]
        parent = next((cert for cert in offered if cert not in path and current.issued_by(cert)), None)
        if parent is None:
            return Rejection(
                RejectReason.UNKNOWN_CA, f"{_who(current)} is issued by {current.issuer!r}, not by our trust bundle"
            )
        path.append(parent)
    return Rejection(RejectReason.UNKNOWN_CA, f"no trust anchor within {MAX_CHAIN} intermediates")


def _signing_problem(signer: Certificate, *, intermediates_below: int, is_anchor: bool) -> str | None:
    if not signer.is_ca:
        return "is not a CA (basicConstraints cA is false)"
    usage = signer.key_usage
    if usage is not None and KEY_CERT_SIGN not in usage:
        return "lacks keyUsage keyCertSign"
    limit = signer.path_length
    if limit is not None and intermediates_below > limit:
        return f"allows {limit} intermediate(s) below it, the path has {intermediates_below}"
    if not is_anchor:
        # X509-SVID 4.1: a signing certificate may carry a SPIFFE ID only without a path (a trust domain).
        for uri in signer.uri_sans:
            try:
                if parse_spiffe_id(uri).is_workload:
                    return f"carries a workload ID {uri!r}"
            except SpiffeIdError:
                continue
    return None


def _who(cert: Certificate) -> str:
    uris = cert.uri_sans
    return f"certificate {uris[0]}" if uris else f"certificate {cert.subject!r}"
