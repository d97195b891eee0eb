"""reliability.md G4 against a real ``mesh-proxy`` whose ``--inbound-forward`` port is ``mtls: strict``.

Every negative case is driven by a real client (``openssl s_client``, ``curl``, Python's TLS client, or a raw
socket where no TLS library can shape the bytes) and shows three things: the client is refused, the proxy closed
the connection with the contract's reason (/connections and /metrics), and the application never saw a
connection or a byte. The positive control at the end is the same proxy serving a valid SVID.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.dataplane.detect.hellos import client_hello
from tests.dataplane.mtls.app import RecordingApp
from tests.dataplane.mtls.clients import (
    MESH_H2,
    MESH_HTTP1,
    MESH_TCP,
    REQUEST,
    client_tls_context,
    curl,
    raw_exchange,
    refused_after_handshake,
    s_client,
    tls_handshake,
    tls_request,
)
from tests.dataplane.mtls.identities import MeshCA, Svid, bad_leaves
from tests.dataplane.mtls.legacy_hellos import sslv2_client_hello, sslv3_client_hello
from tests.dataplane.mtls.proxy import POLL, RECORD_TIMEOUT, MeshProxy
from tests.dataplane.mtls.refusals import refused
from tests.identity.pki import BACKEND, FRONTEND

MTLS = "strict"


# --- not a mesh ClientHello: plaintext_refused ---------------------------------------------------------------


async def test_plaintext_http_is_refused(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    async with refused(proxy, app, "plaintext_refused", count=1):
        answer = await curl(f"http://127.0.0.1:{listen}/secret")
    assert answer.exit_code in (52, 56), answer  # empty reply / connection reset: no HTTP answer at all
    assert answer.status is None and answer.body == b""


async def test_plaintext_raw_bytes_are_refused(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    async with refused(proxy, app, "plaintext_refused", count=1):
        assert await raw_exchange(listen, b"\x00\x01 hello, anything that is not TLS\r\n") == b""


async def test_an_sslv2_format_client_hello_is_not_a_mesh_hello(
    proxy: MeshProxy, app: RecordingApp, listen: int
) -> None:
    async with refused(proxy, app, "plaintext_refused", count=1):
        assert await raw_exchange(listen, sslv2_client_hello()) == b""


@pytest.mark.parametrize("alpn", [["h2"], ["http/1.1"], None], ids=["h2", "http1.1", "no-alpn"])
async def test_tls_with_a_valid_svid_but_no_mesh_alpn_is_not_a_mesh_hello(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid, alpn: list[str] | None
) -> None:
    """Ordinary TLS, even from a client holding a valid SVID, is not mesh traffic: refused before any handshake."""
    alpn_args = ["-alpn", ",".join(alpn)] if alpn else []
    async with refused(proxy, app, "plaintext_refused", count=1):
        output = await s_client(listen, "-tls1_3", *alpn_args, *frontend.s_client_args(), stdin=REQUEST)
    assert "no peer certificate available" in output, output  # the proxy never answered the ClientHello
    assert "HTTP/1.1" not in output


async def test_a_silent_client_opens_no_connection_to_the_application(
    proxy: MeshProxy, app: RecordingApp, listen: int
) -> None:
    """Waiting for the ClientHello, a strict port has not connected upstream (not even a TCP connect)."""
    baseline = await proxy.last_id()
    client = await trio.open_tcp_stream("127.0.0.1", listen)
    with trio.fail_after(RECORD_TIMEOUT):
        while not await proxy.open_since(baseline):
            await trio.sleep(POLL)
    (held,) = await proxy.open_since(baseline)
    assert app.connections == 0
    await client.aclose()
    (record,) = await proxy.closed_since(baseline, 1)
    assert record["close_reason"] == "plaintext_refused" and record["bytes_to_upstream"] == 0, record
    assert app.untouched
    # /connections: ``upstream`` is "None until the upstream connection is attempted" (admin schema).
    assert held["upstream"] is None and record["upstream"] is None, f"{record}"


# --- a mesh ClientHello that fails the handshake -------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [["-tls1_2"], ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]],
    ids=["tls1.2", "tls1.1", "tls1.0"],
)
async def test_tls_1_2_and_below_get_protocol_version(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid, version: list[str]
) -> None:
    async with refused(proxy, app, "protocol_version", count=1):
        output = await s_client(listen, *version, "-alpn", MESH_HTTP1, *frontend.s_client_args(), stdin=REQUEST)
    assert "alert protocol version" in output, output  # 70


async def test_an_sslv3_client_hello_gets_protocol_version(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    """OpenSSL 3 cannot send SSL 3.0 any more: the hello is built by hand, with the mesh ALPN."""
    async with refused(proxy, app, "protocol_version", count=1):
        answer = await raw_exchange(listen, sslv3_client_hello(MESH_HTTP1))
    assert answer[:1] == b"\x15" and answer[5:7] == b"\x02\x46", answer  # a fatal alert: protocol_version (70)


async def test_a_mesh_client_hello_then_end_of_stream(proxy: MeshProxy, app: RecordingApp, listen: int) -> None:
    """A client that offers the mesh ALPN and then says no more: the handshake ends without a byte upstream."""
    async with refused(proxy, app, "tls_handshake_eof", count=1):
        await raw_exchange(listen, client_hello(server_name=None, alpn=[MESH_HTTP1]), half_close=True)


async def test_tls_1_3_without_a_client_certificate(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid
) -> None:
    async with refused(proxy, app, "no_client_cert", count=2):
        output = await s_client(listen, "-tls1_3", "-alpn", MESH_HTTP1, "-CAfile", str(frontend.bundle))
        answer = await refused_after_handshake(listen, client_tls_context(None, [MESH_HTTP1], bundle=frontend))
    assert "alert certificate required" in output, output  # 116
    assert "Verify return code: 0 (ok)" in output  # the client had accepted the proxy's SVID
    assert answer == b"", answer  # the request it sent got no answer


async def test_a_client_certificate_from_another_ca(
    proxy: MeshProxy, app: RecordingApp, listen: int, other_ca: MeshCA, frontend: Svid, workdir: Path
) -> None:
    stranger = other_ca.svid(FRONTEND, workdir / "stranger")  # the right ID, from a root we do not trust
    args = ["-cert", str(stranger.cert), "-key", str(stranger.key), "-CAfile", str(frontend.bundle)]
    async with refused(proxy, app, "unknown_ca", count=2):
        output = await s_client(listen, "-tls1_3", "-alpn", MESH_HTTP1, *args)
        answer = await refused_after_handshake(listen, client_tls_context(stranger, [MESH_HTTP1], bundle=frontend))
    assert "alert unknown ca" in output, output  # 48
    assert answer == b"", answer  # the request it sent got no answer


# shape -> (close reason, the alert s_client prints: OpenSSL's own for what it checks, ``internal error`` when
# OpenSSL accepted the chain and our SVID check refused it, docs/identity.md)
BAD_LEAVES = {
    "expired": ("expired", "alert certificate expired"),  # 45
    "not_yet_valid": ("not_yet_valid", "alert bad certificate"),  # 42
    "no_uri_san": ("bad_svid", "alert internal error"),  # 80
    "two_uri_sans": ("bad_svid", "alert internal error"),
    "non_spiffe_uri": ("bad_svid", "alert internal error"),
    "ca_leaf": ("bad_svid", "alert internal error"),
    "wrong_trust_domain": ("bad_svid", "alert internal error"),
    "root_path_id": ("bad_svid", "alert internal error"),
}


@pytest.mark.parametrize("shape", sorted(BAD_LEAVES))
async def test_bad_client_certificates_from_our_own_ca(
    proxy: MeshProxy, app: RecordingApp, listen: int, ca: MeshCA, frontend: Svid, workdir: Path, shape: str
) -> None:
    """reliability.md G4 31-32: expired, not yet valid, and every bad SVID shape, signed by the mesh's root."""
    reason, alert = BAD_LEAVES[shape]
    bad = ca.sign(bad_leaves()[shape], workdir / f"bad-{shape}")
    args = ["-cert", str(bad.cert), "-key", str(bad.key), "-CAfile", str(frontend.bundle)]
    async with refused(proxy, app, reason, count=2):
        output = await s_client(listen, "-tls1_3", "-alpn", MESH_HTTP1, *args)
        answer = await refused_after_handshake(listen, client_tls_context(bad, [MESH_HTTP1], bundle=frontend))
    assert alert in output, output
    assert "HTTP/1.1" not in output
    assert answer == b"", answer  # the request it sent got no answer


async def test_a_mesh_looking_alpn_we_do_not_speak(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid
) -> None:
    """``triomesh.bogus`` is no protocol of ours: refused as not a mesh hello, or as an ALPN failure."""
    async with refused(proxy, app, {"plaintext_refused", "alpn"}, count=1):
        output = await s_client(listen, "-tls1_3", "-alpn", "triomesh.bogus", *frontend.s_client_args(), stdin=REQUEST)
    assert "HTTP/1.1" not in output, output


# --- positive controls ---------------------------------------------------------------------------------------


async def test_a_valid_svid_with_the_mesh_http1_alpn_reaches_the_application(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid
) -> None:
    baseline = await proxy.last_id()
    output = await s_client(listen, "-tls1_3", "-alpn", MESH_HTTP1, *frontend.s_client_args(), stdin=REQUEST)
    answer = await tls_request(listen, client_tls_context(frontend, [MESH_HTTP1]))
    assert f"ALPN protocol: {MESH_HTTP1}" in output, output
    assert "Verify return code: 0 (ok)" in output
    for response in (output.encode(), answer):
        assert isinstance(response, bytes), response
        assert b"HTTP/1.1 200 OK" in response and b"app saw GET /secret HTTP/1.1" in response, response
    assert app.connections >= 1 and app.requests == ["GET /secret HTTP/1.1"] * 2
    records = await proxy.closed_since(baseline, 2)
    for rec in records:
        assert rec["tls"] == "true" and rec["client_id"] == FRONTEND, rec
        assert rec["bytes_to_upstream"] > 0, rec


@pytest.mark.parametrize("alpn", [MESH_HTTP1, MESH_H2, MESH_TCP])
async def test_the_proxy_presents_its_own_svid_for_every_mesh_protocol(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid, alpn: str
) -> None:
    negotiated, uris, _ = await tls_handshake(listen, client_tls_context(frontend, [alpn]))
    assert (negotiated, uris) == (alpn, [BACKEND])


async def test_opaque_tcp_over_the_mesh_alpn_is_relayed(
    proxy: MeshProxy, app: RecordingApp, listen: int, frontend: Svid
) -> None:
    _, _, echoed = await tls_handshake(listen, client_tls_context(frontend, [MESH_TCP]), b"opaque ping")
    assert echoed == b"opaque ping"
    assert app.received == b"opaque ping"
