"""Identities for the proxies and their clients: real ones from ``meshctl ca init/issue``, and certificates of
every bad shape from the test PKI's ``leaf_spec``, signed by the very root ``meshctl ca init`` wrote."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from identity.authority import load_root
from identity.x509 import CertSpec, PrivateKey, build_certificate
from tests.dataplane.mtls.proxy import CHECKOUT
from tests.identity.pki import BACKEND, FRONTEND, leaf_spec

TRUST_DOMAIN = "example.org"  # the trust domain of tests.identity.pki's FRONTEND and BACKEND
OTHER = "spiffe://example.org/ns/default/sa/other"


@dataclass(frozen=True)
class Svid:
    """Files a client presents: ``cert`` and ``key``, and the ``bundle`` it verifies the server with."""

    cert: Path
    key: Path
    bundle: Path

    def s_client_args(self) -> list[str]:
        return ["-cert", str(self.cert), "-key", str(self.key), "-CAfile", str(self.bundle)]


def meshctl(*args: str) -> str:
    """Run ``meshctl`` from this checkout; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "ctl", *args], cwd=CHECKOUT, capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@dataclass(frozen=True)
class MeshCA:
    """A CA directory written by ``meshctl ca init``."""

    directory: Path

    @classmethod
    def init(cls, directory: Path) -> MeshCA:
        meshctl("ca", "init", str(directory), "--trust-domain", TRUST_DOMAIN)
        return cls(directory)

    def issue(self, spiffe_id: str, out: Path, *, ttl: str = "2h") -> Path:
        """An identity directory (``..data`` layout) for ``--identity``."""
        meshctl("ca", "issue", "--ca", str(self.directory), "--identity", spiffe_id, "--ttl", ttl, "--out", str(out))
        return out

    def svid(self, spiffe_id: str, out: Path) -> Svid:
        self.issue(spiffe_id, out)
        return Svid(out / "cert.pem", out / "key.pem", out / "bundle.pem")

    def sign(self, spec: CertSpec, out: Path) -> Svid:
        """A certificate of any shape ``spec`` says, signed by this root, with a fresh key."""
        root = load_root(self.directory)
        key = PrivateKey.generate()
        cert = build_certificate(spec, key, issuer=(root.cert, root.key))
        out.mkdir(parents=True, exist_ok=True)
        (out / "cert.pem").write_bytes(cert.to_pem())
        (out / "key.pem").write_bytes(key.to_pem())
        (out / "bundle.pem").write_bytes(root.cert.to_pem())
        return Svid(out / "cert.pem", out / "key.pem", out / "bundle.pem")


def now() -> datetime:
    """OpenSSL in the proxy checks validity against the machine's clock."""
    return datetime.now(UTC)


# The bad client certificates of reliability.md G4 31-32, each signed by the mesh's own root: name -> leaf spec.
def bad_leaves() -> dict[str, CertSpec]:
    current = now()
    return {
        "expired": leaf_spec(FRONTEND, now=current - timedelta(days=3)),
        "not_yet_valid": leaf_spec(FRONTEND, now=current + timedelta(days=3)),
        "no_uri_san": leaf_spec(now=current, uris=(), dns_names=("frontend.default.svc",)),
        "two_uri_sans": leaf_spec(FRONTEND, BACKEND, now=current),
        "non_spiffe_uri": leaf_spec("https://example.org/ns/default/sa/frontend", now=current),
        "ca_leaf": leaf_spec(now=current, ca=True, key_usage=frozenset({"digitalSignature", "keyCertSign"})),
        "wrong_trust_domain": leaf_spec("spiffe://other.org/ns/default/sa/frontend", now=current),
        "root_path_id": leaf_spec("spiffe://example.org", now=current),
    }
