"""Per test module: a CA from ``meshctl ca init`` (and a stranger's), the client's SVID, the port of the
application the module's proxies forward to, and (``proxy``) a real mesh-proxy presenting ``sa/backend`` whose
``--inbound-forward`` port leads there, with ``inbound.mtls`` set to the module's ``MTLS``. Per test: a fresh
recording application on that port, so every test starts from 0 connections and 0 bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.dataplane.mtls.app import RecordingApp, start_app
from tests.dataplane.mtls.identities import MeshCA, Svid
from tests.dataplane.mtls.proxy import MeshProxy, inbound_proxy
from tests.dataplane.proxy_harness import free_port
from tests.identity.pki import BACKEND, FRONTEND


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


@pytest.fixture(scope="module")
def listen() -> int:
    """The proxy's --inbound-forward port, for modules with one inbound proxy."""
    return free_port()


@pytest.fixture
async def app(app_port: int, nursery: trio.Nursery) -> RecordingApp:
    return await start_app(nursery, app_port)


@pytest.fixture(scope="module")
def proxy(request: pytest.FixtureRequest, ca: MeshCA, workdir: Path, listen: int, app_port: int) -> Iterator[MeshProxy]:
    mtls = request.module.MTLS
    identity = ca.issue(BACKEND, workdir / "backend")
    with inbound_proxy(workdir / "proxy", identity, mtls, [listen], app_port) as running:
        yield running
