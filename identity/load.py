"""Loading a proxy's identity directory (cert.pem, key.pem, bundle.pem) and checking it before use.

The set is read as one version (``identity.files.read_set``), then checked the way a peer would check it: the
key matches the certificate, the certificate is a valid X509-SVID that chains to the bundle and is inside its
validity window now. The result is an ``Identity`` value holding the bytes it was checked from, so a TLS
context built from it uses exactly what was verified even if the files change again meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from identity.authority import BUNDLE_FILE, CERT_FILE, KEY_FILE
from identity.files import MaterialError, read_set
from identity.spiffe import SpiffeId
from identity.verify import Rejection, TrustBundle, TrustBundleError, verify_peer_chain
from identity.x509 import Certificate, PrivateKey, X509Error, load_pem_certificates


class IdentityError(Exception):
    """An identity directory we refuse; ``path`` names the file at fault and ``problem`` says why."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """A checked identity: who we are, until when, and the material to present and to verify peers with."""

    spiffe_id: SpiffeId
    not_before: datetime
    not_after: datetime
    serial: int
    directory: Path
    chain: tuple[Certificate, ...]
    """Our leaf first, then any intermediates cert.pem holds: what we send in the handshake."""
    key: PrivateKey
    bundle: TrustBundle
    bundle_pem: bytes

    @property
    def trust_domain(self) -> str:
        return self.spiffe_id.trust_domain

    @property
    def cert_path(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def bundle_path(self) -> Path:
        return self.directory / BUNDLE_FILE


def load_identity(directory: Path, *, now: datetime) -> Identity:
    """Read and check ``directory``; IdentityError naming the file and the problem."""
    try:
        files = read_set(directory, (CERT_FILE, KEY_FILE, BUNDLE_FILE))
    except MaterialError as exc:
        raise IdentityError(exc.path, exc.problem) from None
    cert_path, key_path, bundle_path = (directory / name for name in (CERT_FILE, KEY_FILE, BUNDLE_FILE))
    try:
        chain = tuple(load_pem_certificates(files[CERT_FILE]))
    except X509Error as exc:
        raise IdentityError(cert_path, str(exc)) from None
    try:
        key = PrivateKey.from_pem(files[KEY_FILE])
    except X509Error as exc:
        raise IdentityError(key_path, str(exc)) from None
    try:
        bundle = TrustBundle.from_pem(files[BUNDLE_FILE])
    except TrustBundleError as exc:
        raise IdentityError(bundle_path, str(exc)) from None
    leaf = chain[0]
    if not leaf.matches_key(key):
        raise IdentityError(key_path, f"does not match the certificate in {cert_path} (serial {leaf.serial:x})")
    trust_domain = _claimed_trust_domain(leaf)
    verified = verify_peer_chain(chain, bundle, trust_domain=trust_domain, now=now)
    if isinstance(verified, Rejection):
        raise IdentityError(cert_path, f"not a valid SVID for {bundle_path} ({verified})")
    return Identity(
        spiffe_id=verified,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        serial=leaf.serial,
        directory=directory,
        chain=chain,
        key=key,
        bundle=bundle,
        bundle_pem=files[BUNDLE_FILE],
    )


def _claimed_trust_domain(leaf: Certificate) -> str:
    """The trust domain the leaf claims; verify_peer_chain checks the claim (a bad URI fails there)."""
    uris = leaf.uri_sans
    if len(uris) == 1 and uris[0].startswith("spiffe://"):
        return uris[0][len("spiffe://") :].partition("/")[0]
    return ""
