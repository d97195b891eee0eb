"""A test PKI: a root per trust domain and leaves of any shape, good or bad, signed by it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from identity.authority import Authority, IssuedSvid, create_root, issue_svid, publish_svid
from identity.spiffe import parse_spiffe_id
from identity.verify import TrustBundle
from identity.x509 import KEY_CERT_SIGN, Certificate, CertSpec, PrivateKey, build_certificate

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FRONTEND = "spiffe://example.org/ns/default/sa/frontend"
BACKEND = "spiffe://example.org/ns/default/sa/backend"


def leaf_spec(*uris: str, now: datetime = NOW, **changes: object) -> CertSpec:
    """A well-formed SVID leaf spec (valid an hour either side of ``now``), with ``changes`` applied."""
    spec = CertSpec(uris=uris or (FRONTEND,), not_before=now - timedelta(hours=1), not_after=now + timedelta(hours=1))
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


class Pki:
    """One trust domain's root; ``sign`` makes certificates under it (or under an intermediate)."""

    def __init__(self, trust_domain: str = "example.org", *, now: datetime = NOW) -> None:
        self.now = now
        self.root: Authority = create_root(trust_domain, now=now - timedelta(days=1), ttl=timedelta(days=30))
        self.bundle = TrustBundle((self.root.cert,))

    def sign(
        self, spec: CertSpec, *, issuer: tuple[Certificate, PrivateKey] | None = None
    ) -> tuple[Certificate, PrivateKey]:
        key = PrivateKey.generate()
        return build_certificate(spec, key, issuer=issuer or (self.root.cert, self.root.key)), key

    def intermediate(self, *, ca: bool = True) -> tuple[Certificate, PrivateKey]:
        spec = CertSpec(
            common_name="intermediate",
            ca=ca,
            key_usage=frozenset({KEY_CERT_SIGN}) if ca else frozenset({"digitalSignature"}),
            extended_key_usage=None,
            not_before=self.now - timedelta(days=1),
            not_after=self.now + timedelta(days=1),
        )
        return self.sign(spec)

    def svid(self, identity: str = FRONTEND, *, ttl: timedelta = timedelta(hours=24)) -> IssuedSvid:
        return issue_svid(self.root, parse_spiffe_id(identity), now=self.now, ttl=ttl)

    def identity_dir(self, directory: Path, identity: str = FRONTEND, *, ttl: timedelta = timedelta(hours=24)) -> Path:
        publish_svid(directory, self.svid(identity, ttl=ttl))
        return directory
