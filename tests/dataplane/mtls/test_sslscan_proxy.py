"""sslscan (Debian's) against a running ``mesh-proxy``'s strict ``--inbound-forward`` port.

``tests/dataplane/tls/test_sslscan.py`` scans a bare ``server_context`` server: TLS 1.3 only, and a client
certificate required. Here the scanner meets the whole proxy. sslscan cannot offer ALPN, so none of its
ClientHellos is a mesh ClientHello: the strict port must refuse every probe before any TLS (close reason
``plaintext_refused``), so sslscan finds no protocol version at all, and not one probe reaches the application.

Then sslscan again through ``alpn_shim``, which adds the mesh ALPN to its ClientHellos: now the proxy takes them
for mesh hellos, and sslscan finds TLS 1.3 only (its older probes refused with ``protocol_version``). The shim
breaks the TLS 1.3 transcript, so a scanner cannot go further (the client certificate requirement is the
s_client cases of ``test_strict_inbound``).
"""

from __future__ import annotations

from xml.etree import ElementTree

import pytest
import trio

from tests.dataplane.mtls.alpn_shim import alpn_shim
from tests.dataplane.mtls.app import RecordingApp
from tests.dataplane.mtls.clients import MESH_HTTP1
from tests.dataplane.mtls.identities import Svid
from tests.dataplane.mtls.proxy import MeshProxy
from tests.tools import need

SCAN_TIMEOUT = 120.0
VERSIONS = ("ssl2", "ssl3", "tls1.0", "tls1.1", "tls1.2", "tls1.3")  # as sslscan's XML names them


MTLS = "strict"


async def sslscan(port: int, *extra: str) -> dict[str, bool]:
    """protocol -> accepted, from sslscan's XML report."""
    command = [need("sslscan"), "--no-colour", "--xml=-", "--no-groups", "--no-heartbleed", *extra, f"127.0.0.1:{port}"]
    with trio.fail_after(SCAN_TIMEOUT):
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    report = ElementTree.fromstring(result.stdout.decode().partition("\n")[2])  # after the XML declaration
    return {f"{p.get('type')}{p.get('version')}": p.get("enabled") == "1" for p in report.iter("protocol")}


@pytest.mark.parametrize("with_svid", [False, True], ids=["no-certificate", "valid-svid"])
async def test_sslscan_gets_no_handshake_from_a_strict_port(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid, with_svid: bool
) -> None:
    baseline = await proxy.last_id()
    extra = [f"--certs={frontend.cert}", f"--pk={frontend.key}"] if with_svid else []
    protocols = await sslscan(listen, *extra)
    assert protocols == dict.fromkeys(VERSIONS, False), protocols
    records = await proxy.settled_since(baseline)
    assert len(records) >= 6, records  # at least one probe per protocol version
    assert {rec["close_reason"] for rec in records} == {"plaintext_refused"}, records
    assert all(rec["bytes_to_upstream"] == 0 for rec in records)
    assert app.untouched, (app.connections, bytes(app.received[:200]))


async def test_sslscan_offering_the_mesh_alpn_finds_tls_1_3_only(
    proxy: MeshProxy, app: RecordingApp, listen: int
) -> None:
    baseline = await proxy.last_id()
    async with alpn_shim(listen, MESH_HTTP1) as shim:
        protocols = await sslscan(shim)
    assert protocols == dict.fromkeys(VERSIONS, False) | {"tls1.3": True}, protocols
    records = await proxy.settled_since(baseline)
    reasons = [rec["close_reason"] for rec in records]
    assert reasons.count("protocol_version") >= 3, reasons  # TLS 1.0, 1.1 and 1.2 at least
    # TLS 1.3 probes end when sslscan stops (it has what it wanted) or fails the transcript the shim broke; the
    # SSL 2 probe is no TLS handshake record at all.
    assert set(reasons) <= {"protocol_version", "tls_handshake_eof", "tls_alert", "plaintext_refused"}, f"{records}"
    assert all(rec["bytes_to_upstream"] == 0 for rec in records)
    assert app.untouched, (app.connections, bytes(app.received[:200]))
