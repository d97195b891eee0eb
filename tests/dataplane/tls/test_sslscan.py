"""sslscan (Debian's, issue 5) against a mesh TLS server built from ``server_context`` on loopback.

sslscan says which protocol versions the server accepts: TLS 1.3 only. It cannot tell "client certificate
required" by itself (its "acceptable client CA names" section prints whether or not a certificate was asked
for), so the server records why it refused each of sslscan's handshakes: without a client certificate every
TLS 1.3 handshake sslscan completes is refused as ``no_client_cert``; given a valid client SVID the same
probes pass the certificate check (they then fail only on ALPN, which sslscan does not offer). No probe ever
reaches the application.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
import trio

from dataplane.tls import errors
from dataplane.tls.handshake import tls_accept
from dataplane.tls.openssl import TLSContext, server_context
from tests.dataplane.tls.mesh import MESH, identity_of, loopback_listener, real_pki
from tests.identity.pki import BACKEND, FRONTEND, Pki
from tests.tools import need

HANDSHAKE_TIMEOUT = 10.0  # seconds; sslscan's own socket timeout is 3 s
SCAN_TIMEOUT = 120.0


@dataclass
class Outcomes:
    """Per sslscan connection: the refusal reason, or ``accepted``; and what reached the application."""

    reasons: Counter[str] = field(default_factory=Counter)
    delivered: bytearray = field(default_factory=bytearray)


async def serve(
    listener: trio.SocketListener,
    context: TLSContext,
    outcomes: Outcomes,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
) -> None:
    async def handle(transport: trio.SocketStream) -> None:
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                stream = await tls_accept(transport, context)
        except errors.TLSHandshakeError as exc:
            outcomes.reasons[exc.reason] += 1
            return
        except trio.TooSlowError:
            outcomes.reasons["timeout"] += 1
            await trio.aclose_forcefully(transport)
            return
        outcomes.reasons["accepted"] += 1
        async with stream:
            while data := await stream.receive_some():
                outcomes.delivered.extend(data)

    await trio.serve_listeners(handle, [listener], task_status=task_status)


async def scan(context: TLSContext, *extra: str) -> tuple[dict[str, bool], Outcomes]:
    """Run sslscan against a fresh server; (protocol -> accepted, from its XML report), server outcomes."""
    sslscan = need("sslscan")
    outcomes = Outcomes()
    listener, port = await loopback_listener()
    with trio.fail_after(SCAN_TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, listener, context, outcomes))
            result = await trio.run_process(
                [sslscan, "--no-colour", "--xml=-", "--no-groups", "--no-heartbleed", *extra, f"127.0.0.1:{port}"],
                capture_stdout=True,
                capture_stderr=True,
            )
            nursery.cancel_scope.cancel()
    report = ElementTree.fromstring(result.stdout.decode().partition("\n")[2])  # after the XML declaration
    protocols = {f"{p.get('type')}{p.get('version')}": p.get("enabled") == "1" for p in report.iter("protocol")}
    return protocols, outcomes


@pytest.fixture(scope="module")
def pki() -> Pki:
    return real_pki()


@pytest.fixture(scope="module")
def server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TLSContext:
    return server_context(identity_of(pki, tmp_path_factory.mktemp("backend"), BACKEND), protocols=MESH)


async def test_sslscan_finds_tls_1_3_only(server: TLSContext) -> None:
    protocols, outcomes = await scan(server)
    assert protocols == {
        "ssl2": False,
        "ssl3": False,
        "tls1.0": False,
        "tls1.1": False,
        "tls1.2": False,
        "tls1.3": True,
    }
    assert outcomes.reasons["protocol_version"] >= 1  # its TLS 1.0-1.2 probes, refused by the server
    assert outcomes.delivered == bytearray()


async def test_sslscan_without_a_client_certificate_is_refused(server: TLSContext) -> None:
    _, outcomes = await scan(server)
    assert outcomes.reasons["no_client_cert"] >= 1, outcomes.reasons
    assert outcomes.reasons["accepted"] == 0 and outcomes.delivered == bytearray()


async def test_the_same_probes_with_a_client_svid_pass_the_certificate_check(
    server: TLSContext, pki: Pki, tmp_path: Path
) -> None:
    """The control for the test above: it was the missing certificate that got those handshakes refused."""
    identity_of(pki, tmp_path, FRONTEND)
    _, outcomes = await scan(server, f"--certs={tmp_path / 'cert.pem'}", f"--pk={tmp_path / 'key.pem'}")
    assert outcomes.reasons["no_client_cert"] == 0, outcomes.reasons
    assert outcomes.reasons["alpn"] >= 1, outcomes.reasons  # verified, then refused: sslscan offers no ALPN
    assert outcomes.reasons["accepted"] == 0 and outcomes.delivered == bytearray()
