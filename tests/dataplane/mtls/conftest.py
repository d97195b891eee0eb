"""Per test module: a CA from ``meshctl ca init`` (and a stranger's), the client's SVID, and the port of the
application the module's proxies forward to. Per test: a fresh recording application on that port, so every
test starts from 0 connections and 0 bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.dataplane.mtls.app import RecordingApp, start_app
from tests.dataplane.mtls.identities import MeshCA, Svid
from tests.dataplane.proxy_harness import free_port
from tests.identity.pki import FRONTEND


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mtls")


@pytest.fixture(scope="module")
def ca(workdir: Path) -> MeshCA:
    return MeshCA.init(workdir / "ca")


@pytest.fixture(scope="module")
def other_ca(workdir: Path) -> MeshCA:
    """Another root for the same trust domain name: its SVIDs look right and chain to nothing we trust."""
    return MeshCA.init(workdir / "other-ca")


@pytest.fixture(scope="module")
def frontend(ca: MeshCA, workdir: Path) -> Svid:
    return ca.svid(FRONTEND, workdir / "frontend")


@pytest.fixture(scope="module")
def app_port() -> int:
    return free_port()


@pytest.fixture
async def app(app_port: int, nursery: trio.Nursery) -> RecordingApp:
    return await start_app(nursery, app_port)
