"""reliability.md G4 39, the control for the strict module: an ``mtls: permissive`` inbound port accepts
plaintext (client identity none) besides mesh mTLS, and still verifies every mesh client it terminates."""

from __future__ import annotations

from pathlib import Path

from tests.dataplane.mtls.app import RecordingApp
from tests.dataplane.mtls.clients import (
    MESH_HTTP1,
    client_tls_context,
    curl,
    raw_exchange,
    refused_after_handshake,
    tls_request,
)
from tests.dataplane.mtls.identities import MeshCA, Svid, bad_leaves
from tests.dataplane.mtls.proxy import MeshProxy
from tests.dataplane.mtls.refusals import refused
from tests.identity.pki import FRONTEND

MTLS = "permissive"


async def test_plaintext_http_is_accepted(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    baseline = await proxy.last_id()
    answer = await curl(f"http://127.0.0.1:{listen}/open")
    assert (answer.exit_code, answer.status) == (0, 200), answer
    assert answer.body == b"app saw GET /open HTTP/1.1\n"
    (record,) = await proxy.closed_since(baseline, 1)
    assert record["tls"] == "no_identity" and record["client_id"] is None, record


async def test_plaintext_opaque_bytes_are_relayed(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    assert await raw_exchange(listen, b"\x00\x01 opaque", half_close=True) == b"\x00\x01 opaque"
    assert app.received == b"\x00\x01 opaque"


async def test_a_valid_svid_is_served_over_mesh_tls(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid
) -> None:
    baseline = await proxy.last_id()
    answer = await tls_request(listen, client_tls_context(frontend, [MESH_HTTP1]))
    assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 200 OK"), answer
    (record,) = await proxy.closed_since(baseline, 1)
    assert record["tls"] == "true" and record["client_id"] == FRONTEND, record


async def test_a_mesh_client_with_a_bad_svid_is_still_refused(
    proxy: MeshProxy, app: RecordingApp, listen: int, ca: MeshCA, frontend: Svid, workdir: Path
) -> None:
    """Permissive accepts plaintext; it does not accept a mesh client whose SVID fails verification. (A permissive
    port connects to the application before it reads the client, so a TCP connect is allowed: never a byte.)"""
    bad = ca.sign(bad_leaves()["two_uri_sans"], workdir / "bad-permissive")
    async with refused(proxy, app, "bad_svid", count=1, app_connects=True):
        answer = await refused_after_handshake(listen, client_tls_context(bad, [MESH_HTTP1], bundle=frontend))
    assert answer == b"", answer  # the request it sent got no answer
