from __future__ import annotations

from pathlib import Path

import pytest

from tests.dataplane.svid.sets import IdentityDir
from tests.dataplane.tls.mesh import real_pki
from tests.identity.pki import Pki


@pytest.fixture
def pki() -> Pki:
    """On the machine's clock: OpenSSL checks validity against it during the handshakes."""
    return real_pki()


@pytest.fixture
def directory(pki: Pki, tmp_path: Path) -> IdentityDir:
    return IdentityDir(pki, tmp_path / "identity")
