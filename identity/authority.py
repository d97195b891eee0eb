"""A trust domain's root CA, and X.509-SVIDs issued by it (what ``meshctl ca`` runs).

The root is ECDSA P-256, CA:TRUE, keyUsage keyCertSign+cRLSign (critical), pathLen 0 (it signs leaves only)
and carries its trust domain as the URI SAN ``spiffe://<td>`` (X509-SVID 4.1 allows a signing certificate a
trust-domain ID), so ``issue`` can tell which identities it may sign. An SVID has exactly one URI SAN (critical,
the subject is empty), CA:FALSE, keyUsage digitalSignature (critical), extendedKeyUsage serverAuth+clientAuth
and a fresh P-256 key; it starts ``CLOCK_SKEW`` in the past so peers with a slightly slow clock accept it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from identity.files import MaterialError, publish_set, read_set, write_file
from identity.spiffe import SpiffeId, SpiffeIdError, parse_spiffe_id, parse_trust_domain
from identity.x509 import (
    CRL_SIGN,
    KEY_CERT_SIGN,
    Certificate,
    CertSpec,
    PrivateKey,
    X509Error,
    build_certificate,
    load_pem_certificates,
)

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
CERT_FILE: Final = "cert.pem"
KEY_FILE: Final = "key.pem"
BUNDLE_FILE: Final = "bundle.pem"
CLOCK_SKEW: Final = timedelta(seconds=20)  # Linkerd's clockSkewAllowance
ROOT_NAME: Final = "triomesh root CA"
_PRIVATE: Final = 0o600
_PUBLIC: Final = 0o644


class AuthorityError(Exception):
    """A CA operation that cannot be done; ``field`` names the input at fault (a CLI flag maps to it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Authority:
    trust_domain: str
    cert: Certificate
    key: PrivateKey


@dataclass(frozen=True, slots=True)
class IssuedSvid:
    spiffe_id: SpiffeId
    cert: Certificate
    key: PrivateKey
    bundle_pem: bytes


def create_root(trust_domain: str, *, now: datetime, ttl: timedelta) -> Authority:
    parse_trust_domain(trust_domain)
    key = PrivateKey.generate()
    spec = CertSpec(
        organization=trust_domain[:64],  # X.520 upper bound; the URI SAN carries the full name
        common_name=ROOT_NAME,
        uris=(str(SpiffeId(trust_domain)),),
        ca=True,
        path_length=0,
        key_usage=frozenset({KEY_CERT_SIGN, CRL_SIGN}),
        extended_key_usage=None,
        not_before=now - CLOCK_SKEW,
        not_after=now + ttl,
    )
    return Authority(trust_domain, build_certificate(spec, key), key)


def issue_svid(authority: Authority, spiffe_id: SpiffeId, *, now: datetime, ttl: timedelta) -> IssuedSvid:
    """Issue an SVID for ``spiffe_id``; AuthorityError("identity"|"ttl") when the CA cannot sign it."""
    if not spiffe_id.is_workload:
        raise AuthorityError("identity", f"{spiffe_id} names a trust domain; a workload ID needs a path")
    if not spiffe_id.in_trust_domain(authority.trust_domain):
        raise AuthorityError("identity", f"{spiffe_id} is not in the CA's trust domain {authority.trust_domain!r}")
    if ttl <= timedelta(0):
        raise AuthorityError("ttl", "the lifetime must be positive")
    not_after = now + ttl
    if not_after > authority.cert.not_after:
        raise AuthorityError(
            "ttl", f"the SVID would outlive the CA, which expires at {authority.cert.not_after.isoformat()}"
        )
    key = PrivateKey.generate()
    spec = CertSpec(uris=(str(spiffe_id),), not_before=now - CLOCK_SKEW, not_after=not_after)
    cert = build_certificate(spec, key, issuer=(authority.cert, authority.key))
    return IssuedSvid(spiffe_id, cert, key, authority.cert.to_pem())


def save_root(directory: Path, authority: Authority, *, force: bool) -> None:
    """Write ca.crt and ca.key (0600); refuse to replace an existing root unless ``force``."""
    if not force:
        existing = [name for name in (CA_CERT, CA_KEY) if (directory / name).exists()]
        if existing:
            raise AuthorityError(
                "force", f"{directory / existing[0]} exists: a new root invalidates every SVID it signed"
            )
    directory.mkdir(parents=True, exist_ok=True)
    # Key first: a crash between the two leaves a key without a certificate, never a certificate without a key.
    write_file(directory / CA_KEY, authority.key.to_pem(), mode=_PRIVATE)
    write_file(directory / CA_CERT, authority.cert.to_pem(), mode=_PUBLIC)


def load_root(directory: Path) -> Authority:
    """Read a root written by ``save_root``; AuthorityError("ca") naming the file and the problem."""
    try:
        files = read_set(directory, (CA_CERT, CA_KEY))
    except MaterialError as exc:
        raise AuthorityError("ca", str(exc)) from None
    try:
        certs = load_pem_certificates(files[CA_CERT])
    except X509Error as exc:
        raise AuthorityError("ca", f"{directory / CA_CERT}: {exc}") from None
    try:
        key = PrivateKey.from_pem(files[CA_KEY])
    except X509Error as exc:
        raise AuthorityError("ca", f"{directory / CA_KEY}: {exc}") from None
    cert = certs[0]
    if not cert.is_ca:
        raise AuthorityError("ca", f"{directory / CA_CERT}: not a CA certificate")
    if not cert.matches_key(key):
        raise AuthorityError("ca", f"{directory / CA_KEY}: does not match {directory / CA_CERT}")
    trust_domains = []
    for uri in cert.uri_sans:
        try:
            trust_domains.append(parse_spiffe_id(uri).trust_domain)
        except SpiffeIdError:
            continue
    if len(trust_domains) != 1:
        raise AuthorityError("ca", f"{directory / CA_CERT}: no spiffe://<trust domain> URI SAN names its domain")
    return Authority(trust_domains[0], cert, key)


def publish_svid(directory: Path, svid: IssuedSvid, *, owner: int | None = None) -> None:
    """Write cert.pem, key.pem (0600) and bundle.pem as one set (``identity.files.publish_set``), owned by UID
    ``owner`` when given (the proxy's: it must read the key the moment the set appears)."""
    publish_set(
        directory,
        {
            CERT_FILE: (svid.cert.to_pem(), _PUBLIC),
            KEY_FILE: (svid.key.to_pem(), _PRIVATE),
            BUNDLE_FILE: (svid.bundle_pem, _PUBLIC),
        },
        owner=owner,
    )
