"""Identity directories in the layout ``meshctl ca issue`` writes (good, broken and mismatched sets), and waiting
for an ``IdentityStore`` to apply one."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import trio

from dataplane.svid.store import IdentityStore
from identity.authority import BUNDLE_FILE, CERT_FILE, KEY_FILE, IssuedSvid, issue_svid, publish_svid
from identity.files import publish_set
from identity.spiffe import parse_spiffe_id
from tests.identity.pki import BACKEND, Pki


class IdentityDir:
    """One proxy's --identity directory; every write replaces the whole set through ``..data``, like the CA."""

    def __init__(self, pki: Pki, directory: Path, spiffe_id: str = BACKEND) -> None:
        self.pki = pki
        self.path = directory
        self.spiffe_id = spiffe_id

    def issue(self, *, ttl: timedelta = timedelta(hours=1), now: datetime | None = None) -> IssuedSvid:
        return issue_svid(self.pki.root, parse_spiffe_id(self.spiffe_id), now=now or self.pki.now, ttl=ttl)

    def publish(self, *, ttl: timedelta = timedelta(hours=1), now: datetime | None = None) -> IssuedSvid:
        """A valid SVID for ``spiffe_id``, as ``meshctl ca issue`` writes it."""
        svid = self.issue(ttl=ttl, now=now)
        publish_svid(self.path, svid)
        return svid

    def publish_broken_cert(self) -> None:
        """cert.pem holds no certificate (a truncated copy, a wrong file)."""
        svid = self.issue()
        self._publish(b"-----BEGIN CERTIFICATE-----\nnot base64\n", svid.key.to_pem(), svid.bundle_pem)

    def publish_mismatched(self) -> None:
        """A certificate with the key of another SVID."""
        svid, other = self.issue(), self.issue()
        self._publish(svid.cert.to_pem(), other.key.to_pem(), svid.bundle_pem)

    def _publish(self, cert: bytes, key: bytes, bundle: bytes) -> None:
        publish_set(self.path, {CERT_FILE: (cert, 0o644), KEY_FILE: (key, 0o600), BUNDLE_FILE: (bundle, 0o644)})


async def applied(store: IdentityStore, generation: int) -> float:
    """Wait (bounded) until ``store`` holds ``generation``; how long it took, on trio's clock."""
    start = trio.current_time()
    with trio.fail_after(10):
        await store.wait_for_generation(generation - 1)
    return trio.current_time() - start
